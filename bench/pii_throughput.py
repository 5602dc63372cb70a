"""PII redaction throughput on real Chinese text: prints ONE JSON line.

    python bench/pii_throughput.py [--chars 4000000] [--doc-chars 3000]

Reads ``../shared/data/zh-classics`` (skips with a message when absent), cuts it into documents and
times ``redact_pii`` with the default config (CPU seconds, one process).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.config import PiiConfig  # noqa: E402
from pipelines.text.pii import redact_pii  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chars", type=int, default=4_000_000)
    p.add_argument("--doc-chars", type=int, default=3000)
    args = p.parse_args()
    books = ROOT.parent / "shared" / "data" / "zh-classics"
    if not books.is_dir():
        print(json.dumps({"bench": "pii_throughput", "skipped": f"{books} not found"}))
        return 0
    text = "".join(f.read_text(errors="ignore") for f in sorted(books.rglob("*.txt")))[: args.chars]
    docs = [text[i : i + args.doc_chars] for i in range(0, len(text), args.doc_chars)]
    cfg = PiiConfig()
    start = time.process_time()
    redacted = sum(sum(redact_pii(d, cfg)[1].values()) for d in docs)
    cpu = time.process_time() - start
    mb = sum(len(d.encode()) for d in docs) / 1e6
    print(json.dumps({"bench": "pii_throughput", "documents": len(docs), "mb": round(mb, 2),
                      "cpu_s": round(cpu, 3), "mb_per_s": round(mb / cpu, 1), "redactions": redacted}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
