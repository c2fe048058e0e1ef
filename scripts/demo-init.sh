#!/usr/bin/env bash
# Creates the demo setup for `make run` once: domain example.test, users
# alice@ and bob@ with a random password printed once, listeners on 10000+port.
set -euo pipefail
HATOBA=$1
DIR=$2
[ -f "$DIR/hatoba.toml" ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  # A demo on loopback, from a checkout that may sit where no other user can
  # reach (/root): it stays root. A real server: hatoba init --system.
  "$HATOBA" init "$DIR" --hostname mail.example.test --domain example.test --port-offset 10000 --user ""
  sed -i 's/^# allow_root = false$/allow_root = true  # the demo only; `hatoba check` calls it critical/' "$DIR/hatoba.toml"
else
  "$HATOBA" init "$DIR" --hostname mail.example.test --domain example.test --port-offset 10000
fi
# init writes the http listener turned off; the demo serves /metrics and /healthz on 10080 (loopback).
sed -i '/^\[listeners\.http\]$/,/^$/ s/^enabled = false$/enabled = true/' "$DIR/hatoba.toml"
PASSWORD=$(python3 -c 'import secrets; print(secrets.token_urlsafe(12))')
for user in alice bob; do
  printf '%s\n' "$PASSWORD" | "$HATOBA" -c "$DIR/hatoba.toml" user add "$user@example.test" --password-stdin
done
cat <<MSG

  Demo users alice@example.test and bob@example.test share the password:

      $PASSWORD

  (shown once; change it with: $HATOBA -c $DIR/hatoba.toml user passwd alice@example.test)
  Trust $DIR/tls/ca.crt in your mail client to verify the server certificate.
  Metrics and health: curl http://127.0.0.1:10080/metrics and /healthz

MSG
