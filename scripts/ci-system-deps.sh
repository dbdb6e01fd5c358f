#!/usr/bin/env bash
# System packages the test suite needs beyond Python (run by ./dev test):
# - Debian's chromium for tests/test_browser.py (Playwright drives it; no browser is ever downloaded);
# - Debian's postfix for tests/test_postfix.py, which runs its own instance on a loopback port from
#   a config directory of its own. Installed with "No configuration" so the system's mail setup is
#   left as it was (no /etc/postfix/main.cf is written, no service is started).
# - Debian's dovecot (IMAP and POP3) for tests/test_bounces_live.py, which runs its own instance on a
#   loopback port from a config directory of its own (tests/dovecot.py), as the Postfix test does; the
#   system's dovecot service, if the package starts one, is not used.
# Idempotent: installs only what is missing.
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium fonts-dejavu-core)
[ -x /usr/sbin/postfix ] || missing+=(postfix)
[ -x /usr/lib/dovecot/imap ] || missing+=(dovecot-imapd)
[ -x /usr/lib/dovecot/pop3 ] || missing+=(dovecot-pop3d)
if [ ${#missing[@]} = 0 ]; then
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
