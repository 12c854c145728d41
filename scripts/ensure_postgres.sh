#!/usr/bin/env bash
# The run-store tests start a real PostgreSQL server of their own (tests/pg_harness.py):
# Debian's server binaries, on a loopback port, in a temp folder. Install the
# distribution's package where it is missing; no cluster is created or started here.
set -euo pipefail
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 && exit 0
command -v postgres >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1 && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "Installing postgresql for the run-store tests..." >&2
$SUDO apt-get update -qq
# The package's post-install creates a cluster and tries to start it; in a container
# without an init system that start fails harmlessly, and the tests never use it.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
ls /usr/lib/postgresql/*/bin/postgres >/dev/null
