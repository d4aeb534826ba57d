#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo need, when they are missing.
# As root it installs them (apt-get update once, then install); otherwise it prints
# exactly what is missing and how to install it, and fails.
set -euo pipefail

# package -> a file that proves it is installed
declare -A wanted=(
  [openssh-server]=/usr/sbin/sshd
  [bind9]=/usr/sbin/named
  [bind9-dnsutils]=/usr/bin/dig
  [postgresql]=/usr/lib/postgresql
  [chromium]=/usr/bin/chromium  # the dashboard's browser tests (Playwright drives it; it downloads no browser)
)

missing=()
for pkg in "${!wanted[@]}"; do
  [ -e "${wanted[$pkg]}" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "lablease: missing system packages: ${missing[*]}" >&2
  echo "install them with: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi

echo "lablease: installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's postinst may start services we do not want; tests start their own.
for svc in named bind9 ssh postgresql; do
  service "$svc" stop >/dev/null 2>&1 || true
done
