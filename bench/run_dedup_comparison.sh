#!/usr/bin/env bash
# Dedup speed benchmark (issue 3): ours vs datatrove (default + tuned), plain datasketch and text-dedup.
#
# Usage: bench/run_dedup_comparison.sh [--work DIR] [--workers 2] [--wait-load 1.5] [--out FILE]
#                                      [--profile] [any other bench/dedup_speed.py flag]
#
# Creates the throwaway datatrove venv (DTVENV, default /tmp/dtvenv_dedup: datatrove 0.10.1 + spaCy +
# jieba) and text-dedup venv (TDVENV, default /tmp/tdvenv: text-dedup 0.4.0, PyPI's latest when this was
# written) when they are missing, then runs bench/dedup_speed.py with the project venv's python: it
# builds the labelled corpus once under --work (default /tmp/dedupspeed), waits for the load when asked,
# runs the five tools one after the other and prints one JSON line per tool (also appended to --out).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$REPO/.venv/bin/python}"
DTVENV="${DTVENV:-/tmp/dtvenv_dedup}"
TDVENV="${TDVENV:-/tmp/tdvenv}"

if [[ ! -x "$DTVENV/bin/python" ]] || ! "$DTVENV/bin/python" -c "import datatrove, spacy, jieba" 2>/dev/null; then
  echo "[compare] creating the datatrove venv in $DTVENV" >&2
  python3.11 -m venv "$DTVENV"
  "$DTVENV/bin/pip" install -q "datatrove[processing]==0.10.1" orjson nltk spacy jieba >&2
fi

if [[ ! -x "$TDVENV/bin/python" ]] || ! "$TDVENV/bin/python" -c "import text_dedup.minhash, datasets" 2>/dev/null; then
  echo "[compare] creating the text-dedup venv in $TDVENV" >&2
  python3.11 -m venv "$TDVENV"
  "$TDVENV/bin/pip" install -q "text-dedup==0.4.0" >&2
fi

cd "$REPO"
exec "$PY" bench/dedup_speed.py --dt-python "$DTVENV/bin/python" --td-python "$TDVENV/bin/python" "$@"
