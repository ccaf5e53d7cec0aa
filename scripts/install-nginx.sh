#!/usr/bin/env bash
# Install nginx for tests/test_deploy_nginx.py (the caching-proxy deploy test).
#
# Idempotent: does nothing when an nginx binary is already there. Otherwise
# installs Debian's nginx-light (small; it has proxy, proxy_cache, map and
# upstream hash, all the deploy configs use) or, where that package does not
# exist, nginx. Needs root and apt; on any other system it says what to do
# and fails, and the test then skips with the reason.
#
# apt would normally start the packaged nginx on port 80 from the package's
# postinst. The test runs its own nginx on ephemeral ports, so a temporary
# policy-rc.d (exit 101: "action forbidden") keeps the service from being
# started; an existing policy-rc.d (as in most containers) is left alone.
set -euo pipefail

PATH="$PATH:/usr/sbin:/sbin"

if command -v nginx >/dev/null 2>&1; then
    echo "nginx already installed: $(command -v nginx)"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-nginx: no nginx and no apt-get; install nginx with your package manager" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-nginx: need root to apt-get install nginx (or install it yourself)" >&2
    exit 1
fi

policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
if apt-cache show nginx-light >/dev/null 2>&1; then
    pkg=nginx-light
else
    pkg=nginx
fi
apt-get install -y -q --no-install-recommends "$pkg"

command -v nginx >/dev/null 2>&1 || { echo "install-nginx: $pkg installed but no nginx binary found" >&2; exit 1; }
echo "installed $pkg: $(command -v nginx)"
