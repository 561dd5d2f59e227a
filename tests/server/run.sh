#!/usr/bin/env bash
# CTest entry for the end-to-end server tests: BUILD_DIR INVAR_BINARY [pytest args...].
# Makes the venv if needed, fetches the default model, runs pytest on tests/server.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$1
binary=$2
shift 2
python=$(bash "$here/../../scripts/setup-server-tests" "$build")
export INVAR_BIN=$binary
export INVAR_MODEL=${INVAR_MODEL:-$(bash "$here/../../scripts/fetch-model")}
cd "$here"
exec "$python" -m pytest -q -p no:cacheprovider "$@" .
