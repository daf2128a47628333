#!/bin/sh
# Install the Debian packages that building, the demo and the tests need,
# when any is missing.  As root it installs them; otherwise it prints the
# one command to run.
set -e
PKGS="gcc make clang libclang-rt-14-dev lua5.4 liblua5.4-dev luarocks lua-busted lua-check
      libmbedtls-dev python3-aiosmtpd postfix valgrind openssl ca-certificates dante-server tinyproxy
      sasl2-bin libsasl2-modules libsasl2-modules-db
      lua5.3 liblua5.3-dev lua5.1 liblua5.1-0-dev luajit2 libluajit2-5.1-dev lua-socket lua-copas
      nginx libnginx-mod-http-lua lua-resty-core dovecot-lmtpd"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing packages; run: sudo apt-get install -y$missing" >&2
  exit 1
fi
echo "installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# Postfix asks how to configure the system instance; the tests run their own.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -q >/dev/null
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing >/dev/null
