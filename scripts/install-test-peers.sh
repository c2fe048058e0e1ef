#!/usr/bin/env bash
# Installs the outside programs the interop tests talk to (Debian/Ubuntu):
# postfix (a real peer MTA; smtp-source for bench/), swaks, openssl, curl,
# fetchmail (a real POP3 client), isync (mbsync) and mutt (real IMAP clients),
# systemd (systemd-analyze verifies the unit; nothing is started), pebble (an
# ACME CA for tests), knot (a DNS server that takes RFC 2136 updates), rspamd
# (a spam filter hatoba hands messages to), redis-server (its learning store),
# chromium and chromium-driver (the web admin's browser tests) with a Japanese
# font (fonts-ipafont-gothic) for the screenshots of the Japanese pages.
# A no-op when they are all present; otherwise needs root (or sudo) and apt.
# Postfix is installed unconfigured ("No configuration"): the tests run
# private instances and never touch the system one.
set -euo pipefail

declare -A wanted=([postfix]=postfix [swaks]=swaks [openssl]=openssl [curl]=curl [fetchmail]=fetchmail [mbsync]=isync [mutt]=mutt [systemd-analyze]=systemd [pebble]=pebble [knotd]=knot [rspamd]=rspamd [redis-server]=redis-server [chromium]=chromium [chromedriver]=chromium-driver)
missing=()
for cmd in "${!wanted[@]}"; do
  # postfix lives in /usr/sbin, which is not on every user's PATH.
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("${wanted[$cmd]}")
done
# swaks needs Net::SSLeay for --tls/--tlsc (a Recommends, absent on minimal installs).
perl -MNet::SSLeay -e1 >/dev/null 2>&1 || missing+=(libnet-ssleay-perl)
# Without a CJK font the Japanese screenshots show boxes.
[ -e /usr/share/fonts/opentype/ipafont-gothic/ipag.ttf ] || fc-list :lang=ja 2>/dev/null | grep -q . || missing+=(fonts-ipafont-gothic)
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-test-peers: missing ${missing[*]} and no apt-get here; install them with your package manager (tests needing them are skipped, or fail under HATOBA_REQUIRE_PEERS=1)" >&2
  exit 0
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "install-test-peers: missing ${missing[*]}; run as root: apt-get install ${missing[*]} (tests needing them are skipped, or fail under HATOBA_REQUIRE_PEERS=1)" >&2
    exit 0
  fi
  SUDO=(sudo)
fi

echo "install-test-peers: installing ${missing[*]}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! {
  echo "postfix postfix/main_mailer_type select No configuration" | "${SUDO[@]}" debconf-set-selections &&
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
} >"$log" 2>&1; then
  tail -n 20 "$log" >&2
  echo "install-test-peers: apt-get failed (output above); install ${missing[*]} by hand" >&2
  exit 1
fi
