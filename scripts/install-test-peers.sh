#!/usr/bin/env bash
# Installs the outside programs the interop tests talk to (Debian/Ubuntu):
# postfix (a real peer MTA; smtp-source for bench/), swaks, openssl, curl,
# fetchmail (a real POP3 client), isync (mbsync) and mutt (real IMAP clients),
# systemd (systemd-analyze verifies the unit; nothing is started), pebble (an
# ACME CA for tests), knot (a DNS server that takes RFC 2136 updates), rspamd
# (a spam filter hatoba hands messages to), redis-server (its learning store),
# chromium and chromium-driver (the web admin's browser tests) with a Japanese
# font (fonts-ipafont-gothic) for the screenshots of the Japanese pages, and
# dovecot-core, dovecot-imapd and dovecot-pop3d (a real Dovecot 2.3, the old
# server `hatoba import dovecot` is tested against).
# A no-op when they are all present; otherwise needs root (or sudo) and apt.
# Postfix is installed unconfigured ("No configuration"): the tests run
# private instances and never touch the system one. Likewise Dovecot: its
# postinst would start the system instance on ports 110/143/993/995 of every
# address; a policy-rc.d keeps it from starting during the install, and a
# Dovecot installed here is disabled (and stopped, should it run) afterwards.
set -euo pipefail

declare -A wanted=([postfix]=postfix [swaks]=swaks [openssl]=openssl [curl]=curl [fetchmail]=fetchmail [mbsync]=isync [mutt]=mutt [systemd-analyze]=systemd [pebble]=pebble [knotd]=knot [rspamd]=rspamd [redis-server]=redis-server [chromium]=chromium [chromedriver]=chromium-driver [dovecot]=dovecot-core [doveadm]=dovecot-core)
missing=()
for cmd in "${!wanted[@]}"; do
  # postfix lives in /usr/sbin, which is not on every user's PATH.
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || [[ " ${missing[*]} " == *" ${wanted[$cmd]} "* ]] ||
    missing+=("${wanted[$cmd]}")
done
# Dovecot's IMAP and POP3 servers are programs its master starts, not commands.
[ -x /usr/lib/dovecot/imap ] || missing+=(dovecot-imapd)
[ -x /usr/lib/dovecot/pop3 ] || missing+=(dovecot-pop3d)
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
policy=""
trap 'rm -f "$log"; [ -z "$policy" ] || "${SUDO[@]}" rm -f "$policy"' EXIT
new_dovecot=0
[[ " ${missing[*]} " != *" dovecot-core "* ]] || new_dovecot=1
if [ "$new_dovecot" = 1 ] && [ ! -e /usr/sbin/policy-rc.d ]; then
  # invoke-rc.d and deb-systemd-invoke ask this script; 101 = "not now", for dovecot only.
  policy=/usr/sbin/policy-rc.d
  printf '#!/bin/sh\n[ "$1" = dovecot ] && exit 101\nexit 0\n' | "${SUDO[@]}" tee "$policy" >/dev/null
  "${SUDO[@]}" chmod 755 "$policy"
fi
if ! {
  echo "postfix postfix/main_mailer_type select No configuration" | "${SUDO[@]}" debconf-set-selections &&
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
} >"$log" 2>&1; then
  tail -n 20 "$log" >&2
  echo "install-test-peers: apt-get failed (output above); install ${missing[*]} by hand" >&2
  exit 1
fi
if [ "$new_dovecot" = 1 ]; then
  # The tests start private instances on loopback ports: the system one stays off, now and at boot.
  "${SUDO[@]}" systemctl disable --now dovecot.service dovecot.socket >/dev/null 2>&1 || true
  "${SUDO[@]}" update-rc.d dovecot disable >/dev/null 2>&1 || true
  if [ -s /run/dovecot/master.pid ]; then "${SUDO[@]}" kill "$(cat /run/dovecot/master.pid)" 2>/dev/null || true; fi
fi
