#!/usr/bin/env bash
# Ingestion + cleaning benchmark (issue 2): corpusforge vs datatrove on the same JSONL corpus.
#
# Usage: bench/run_clean_comparison.sh [--mb 100] [--scan-mb 25] [--workers 2] [--corpus DIR]
#                                      [--wait-load 1.5] [--out FILE]
#
# Builds the corpus with bench/make_text_corpus.py when DIR has no corpus.json of at least --mb, then
# prints three JSON lines (also appended to --out when given):
#   1. corpusforge, all presets on (defaults), with a --scan-mb slice for the memory check
#   2. corpusforge like-for-like (langid, PII, mojibake repair off)
#   3. datatrove (Gopher repetition + Gopher quality + C4 + FineWeb), tasks=16, with the same slice
# --wait-load L first waits (polling every 30 s, at most 20 minutes) until the 1-minute load average
# is below L; it measures anyway after 20 minutes and says so on stderr.
# Needs the project venv (.venv) and the throwaway datatrove venv (DTVENV, default /tmp/dtvenv).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$REPO/.venv/bin/python}"
DTVENV="${DTVENV:-/tmp/dtvenv}"
MB=100
SCAN_MB=25
WORKERS=2
CORPUS=/tmp/cleanbench/corpus
WAIT_LOAD=""
OUT=""

while [[ $# -gt 0 ]]; do
  case "$1" in
    --mb) MB="$2"; shift 2 ;;
    --scan-mb) SCAN_MB="$2"; shift 2 ;;
    --workers) WORKERS="$2"; shift 2 ;;
    --corpus) CORPUS="$2"; shift 2 ;;
    --wait-load) WAIT_LOAD="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

if [[ ! -x "$DTVENV/bin/python" ]]; then
  echo "datatrove venv not found at $DTVENV; create it with:" >&2
  echo "  python3.11 -m venv $DTVENV && $DTVENV/bin/pip install 'datatrove[processing]' orjson nltk spacy" >&2
  exit 1
fi

have_mb=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['text_mb'])" \
  "$CORPUS/corpus.json" 2>/dev/null || echo 0)
if ! "$PY" -c "import sys; sys.exit(0 if float(sys.argv[1]) >= float(sys.argv[2]) else 1)" "$have_mb" "$MB"; then
  echo "[compare] building a ${MB} MB corpus in $CORPUS" >&2
  "$PY" "$REPO/bench/make_text_corpus.py" --out "$CORPUS" --mb "$MB" >&2
fi

if [[ -n "$WAIT_LOAD" ]]; then
  for ((i = 0; i < 40; i++)); do
    load=$(cut -d' ' -f1 /proc/loadavg)
    if "$PY" -c "import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)" "$load" "$WAIT_LOAD"; then
      echo "[compare] 1-minute load $load < $WAIT_LOAD: measuring" >&2
      break
    fi
    if ((i == 39)); then
      echo "[compare] load still $load after 20 minutes: measuring anyway" >&2
      break
    fi
    echo "[compare] 1-minute load $load >= $WAIT_LOAD, waiting 30 s" >&2
    sleep 30
  done
fi

emit() {
  echo "$1"
  if [[ -n "$OUT" ]]; then echo "$1" >>"$OUT"; fi
}

cd "$REPO"
emit "$("$PY" bench/clean_throughput.py --corpus "$CORPUS" --workers "$WORKERS" --scan-mb "$SCAN_MB")"
emit "$("$PY" bench/clean_throughput.py --corpus "$CORPUS" --workers "$WORKERS" --like-for-like)"
emit "$("$DTVENV/bin/python" bench/datatrove_clean.py --corpus "$CORPUS" --tasks 16 \
  --workers "$WORKERS" --scan-mb "$SCAN_MB")"
