#!/usr/bin/env bash
# Installs the embedded local cloud (moto server, pinned in requirements.txt) into the
# project-local virtualenv .venv. Idempotent: a second run with the same pins returns at once.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv="$root/.venv"
req="$root/scripts/cloud/requirements.txt"
stamp="$venv/.cdp-requirements.sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [[ -x "$venv/bin/moto_server" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "local cloud: moto already installed in $venv"
  exit 0
fi
python=${PYTHON:-python3}
command -v "$python" >/dev/null || { echo "local cloud: $python not found (need Python >= 3.9)" >&2; exit 1; }
if [[ ! -x "$venv/bin/python" ]]; then
  echo "local cloud: creating virtualenv $venv"
  "$python" -m venv "$venv"
fi
echo "local cloud: installing pinned moto server into $venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$req"
"$venv/bin/moto_server" --help >/dev/null
echo "$want" > "$stamp"
echo "local cloud: installed $("$venv/bin/python" -m pip show moto 2>/dev/null | grep '^Version' || true)"
