#!/usr/bin/env bash
# Dedup speed benchmark (issue 3): ours vs datatrove (default + tuned) vs plain datasketch, one run.
#
# Usage: bench/run_dedup_comparison.sh [--work DIR] [--workers 2] [--wait-load 1.5] [--out FILE]
#                                      [--profile] [any other bench/dedup_speed.py flag]
#
# Creates the throwaway datatrove venv (DTVENV, default /tmp/dtvenv_dedup: datatrove 0.10.1 + spaCy +
# jieba) when it is missing, then runs bench/dedup_speed.py with the project venv's python: it builds the
# labelled corpus once under --work (default /tmp/dedupspeed), waits for the load when asked, runs the
# four tools one after the other and prints one JSON line per tool (also appended to --out).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$REPO/.venv/bin/python}"
DTVENV="${DTVENV:-/tmp/dtvenv_dedup}"

if [[ ! -x "$DTVENV/bin/python" ]] || ! "$DTVENV/bin/python" -c "import datatrove, spacy, jieba" 2>/dev/null; then
  echo "[compare] creating the datatrove venv in $DTVENV" >&2
  python3.11 -m venv "$DTVENV"
  "$DTVENV/bin/pip" install -q "datatrove[processing]==0.10.1" orjson nltk spacy jieba >&2
fi

cd "$REPO"
exec "$PY" bench/dedup_speed.py --dt-python "$DTVENV/bin/python" "$@"
