#!/usr/bin/env bash
# Browser tests of package web: installs what is missing (Debian's chromium, the npm packages of
# this folder from package-lock.json), then runs them with node's test runner against a gateway
# built from this repository. CHROMIUM overrides the browser path (default /usr/bin/chromium).
set -euo pipefail
cd "$(dirname "$0")"

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  echo "installing chromium (apt-get)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
if ! command -v node >/dev/null 2>&1; then
  echo "node is missing: install Node.js 20 or newer" >&2
  exit 1
fi
if [ ! -d node_modules/playwright-core ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "installing npm packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi
exec node --test --test-reporter=spec --test-concurrency=1 test/
