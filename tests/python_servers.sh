#!/usr/bin/env bash
# The Python servers (bench/python, issue 18) through the C servers' echo checks: the checks
# live in tests/python_servers.py (stdlib only), which ends with "N passed, N failed".
# Usage: tests/python_servers.sh [NAME-SUBSTRING...]
set -u
cd "$(dirname "$0")/.." || exit 1
command -v python3 >/dev/null || { echo "python_servers: no python3"; echo "0 passed, 1 failed"; exit 1; }
exec python3 tests/python_servers.py "$@"
