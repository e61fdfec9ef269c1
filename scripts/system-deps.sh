#!/usr/bin/env bash
# Installs the system packages pricebot needs when they are missing: a PostgreSQL server
# (initdb/pg_ctl) and Chromium for the browser tests, and any package named as an argument
# (`make bench-deps` names hey). Debian/Ubuntu with apt-get; elsewhere it says what to install.
set -euo pipefail

need=("$@")
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1 \
    && [ -z "${PRICEBOT_PG_BIN:-}" ]; then
  need+=(postgresql)
fi
if ! command -v chromium >/dev/null 2>&1 && [ -z "${PRICEBOT_CHROMIUM:-}" ]; then
  need+=(chromium)
fi
# actionlint checks the workflows' run: scripts with ShellCheck when it is on PATH (as on
# GitHub's runners), so have it here too where apt-get can; elsewhere it is optional.
if ! command -v shellcheck >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  need+=(shellcheck)
fi
[ ${#need[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "Please install: ${need[*]}." >&2
  echo "Or set PRICEBOT_PG_BIN / PRICEBOT_CHROMIUM to where they are." >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "Installing ${need[*]} with apt-get"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The Debian package starts a cluster of its own on 5432; pricebot runs its own servers.
if [[ " ${need[*]} " == *" postgresql "* ]] && command -v service >/dev/null 2>&1; then
  $sudo service postgresql stop >/dev/null 2>&1 || true
fi
