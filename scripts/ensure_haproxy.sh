#!/usr/bin/env bash
# The multi-server tests (tests/test_multi_server_proxy.py) put a real HAProxy, the
# deployment's proxy (deploy/haproxy.cfg, compose.yaml), in front of two app servers on
# loopback ports. Install the distribution's package where it is missing; the package's
# own service is never used (the tests start haproxy with their own configuration).
set -euo pipefail
command -v haproxy >/dev/null 2>&1 && exit 0
[ -x /usr/sbin/haproxy ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "Installing haproxy for the multi-server tests..." >&2
$SUDO apt-get update -qq
# In a container without an init system the package's service start fails harmlessly.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends haproxy >/dev/null
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ]
