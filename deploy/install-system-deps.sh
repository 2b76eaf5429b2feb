#!/usr/bin/env bash
# Debian packages the test suite uses beyond Python: nginx (tests/test_deploy_topology.py runs
# deploy/nginx.conf) and chromium (tests/test_admin_ui.py drives /ui with Playwright). Installs only
# what is missing; needs root (CI runs as root). `make test` runs it too.
set -euo pipefail
missing=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-system-deps: not root; install ${missing[*]} yourself (the tests that need them skip)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
