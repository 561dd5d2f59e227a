#!/usr/bin/env bash
# The Python package's checks: INVAR_BINARY [pytest args...].
# `pip install .` into a fresh venv (made here, under a temporary folder), then a generation with
# the default model through `python -c`, then the pytest suite of tests/python, which compares
# the package's bits with `invar serve` (INVAR_BINARY) of the same model.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
binary=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
shift
venv=$(mktemp -d)/venv
trap 'rm -rf "$(dirname "$venv")"' EXIT

python3 -m venv "$venv"
start=$SECONDS
# About 5 minutes on a 2-core machine (the engine libraries and the module, Release).
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$root"
echo "python: pip install . took $((SECONDS - start)) s"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  -r "$root/tests/server/requirements.txt"

export INVAR_BIN=$binary
export INVAR_MODEL=${INVAR_MODEL:-$(bash "$root/scripts/fetch-model")}
cd "$here"
"$venv/bin/python" -c '
import os, invar
llm = invar.LLM(os.environ["INVAR_MODEL"])
out = llm.generate("The capital of France is", invar.SamplingParams(max_tokens=16))
print("python: The capital of France is" + out[0].outputs[0].text)
'
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@" .
