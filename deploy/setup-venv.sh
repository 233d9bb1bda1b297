#!/usr/bin/env bash
# Create or refresh the project's virtual environment in .venv (idempotent: a second run with an
# unchanged pyproject.toml does nothing). torch is installed first and pinned to the CPU build
# on this machine's disk; an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.meshdex-installed"
want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
if [[ ! -x "$venv/bin/python" ]]; then
  echo "meshdex: creating virtual environment in $venv" >&2
  python3 -m venv "$venv"
fi
echo "meshdex: installing dependencies (first run compiles hnswlib: ~1 minute)" >&2
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "torch==2.13.0"
"$venv/bin/python" -m pip install --quiet -e "$root[test]"
echo "$want" > "$stamp"
