"""Build the cleaning benchmark corpus: deterministic JSONL of real English + Chinese text.

Sources (``/work/shared/data``, override with ``CORPUSFORGE_SHARED``):

* tinyshakespeare: every speech becomes one prose paragraph ``"<Speaker> said: <lines joined>"``;
  consecutive paragraphs are grouped into documents of 1-3 KB (UTF-8).
* zh-classics: each book is cut on paragraph (line) boundaries into 1-3 KB documents; a paragraph
  longer than 3 KB is first cut after sentence-final punctuation. BOMs and CRs are removed, the
  rest of the real noise (headings, OCR errors) stays.

The base documents are repeated until ``--mb`` megabytes (10^6 bytes of document text) are reached.
Copy 0 is the base text; copy ``r > 0`` shuffles every document's paragraph order with a seed derived
from ``(seed, r, document)``, and each copy visits the documents in its own shuffled order. English
documents are interleaved so that they make up ``--en-fraction`` of the text bytes (the English
source is ~1 MB against ~25 MB of Chinese, so English is cycled more often). Document ``i`` goes to
file ``i % --files``, so the files are of near-equal size and both tools can parallelise by file.

Each line is ``{"id", "text", "lang", "source"}``; ``lang`` is the source language (never named
``language``, which datatrove's filters would read as a per-document language override).
``corpus.json`` in ``--out`` records the sizes and the document counts by language.

Usage: ``python bench/make_text_corpus.py --out /tmp/cleanbench/corpus --mb 100``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CORPUSFORGE_SHARED", REPO.parent / "shared")) / "data"
MIN_DOC_BYTES = 1000
MAX_DOC_BYTES = 3000
_ZH_SENTENCE_END = re.compile(r"(?<=[。！？；!?])")


def _nbytes(s: str) -> int:
    return len(s.encode("utf-8"))


def shakespeare_paragraphs(text: str) -> list[str]:
    """One ``"Speaker said: ..."`` paragraph per speech of the play text."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text.replace("\r", "")):
        lines = [ln.strip() for ln in block.strip().split("\n") if ln.strip()]
        if len(lines) < 2 or not lines[0].endswith(":"):
            continue
        speaker = lines[0][:-1].strip()
        paragraphs.append(f"{speaker} said: {' '.join(lines[1:])}")
    return paragraphs


def zh_paragraphs(text: str) -> list[str]:
    """Non-empty lines of a book, with over-long paragraphs cut after sentence ends."""
    out = []
    for line in text.replace("\ufeff", "").replace("\r", "").split("\n"):
        line = line.strip()
        if not line:
            continue
        if _nbytes(line) <= MAX_DOC_BYTES:
            out.append(line)
            continue
        piece = ""
        for sentence in _ZH_SENTENCE_END.split(line):
            if piece and _nbytes(piece + sentence) > MAX_DOC_BYTES:
                out.append(piece)
                piece = ""
            piece += sentence
            while _nbytes(piece) > MAX_DOC_BYTES:  # a run-on "sentence": cut by characters
                out.append(piece[: MAX_DOC_BYTES // 3])
                piece = piece[MAX_DOC_BYTES // 3 :]
        if piece:
            out.append(piece)
    return out


def group_paragraphs(paragraphs: list[str], rng: random.Random) -> list[list[str]]:
    """Consecutive paragraphs grouped into documents of MIN..MAX bytes (a short tail joins the last)."""
    docs: list[list[str]] = []
    cur: list[str] = []
    size = 0
    target = rng.randint(MIN_DOC_BYTES, MAX_DOC_BYTES)
    for p in paragraphs:
        n = _nbytes(p) + 2
        if cur and size + n > MAX_DOC_BYTES:
            docs.append(cur)
            cur, size, target = [], 0, rng.randint(MIN_DOC_BYTES, MAX_DOC_BYTES)
        cur.append(p)
        size += n
        if size >= target:
            docs.append(cur)
            cur, size, target = [], 0, rng.randint(MIN_DOC_BYTES, MAX_DOC_BYTES)
    if cur:
        if docs and size < MIN_DOC_BYTES and sum(_nbytes(p) + 2 for p in docs[-1]) + size <= MAX_DOC_BYTES:
            docs[-1].extend(cur)
        elif size >= MIN_DOC_BYTES:
            docs.append(cur)
    return docs


def base_documents(shared: Path, seed: int = 0) -> dict[str, list[tuple[str, list[str]]]]:
    """``{"en": [(source, paragraphs)], "zh": [...]}`` from the shared data, in a fixed order."""
    rng = random.Random(seed)
    en_path = shared / "tinyshakespeare" / "input.txt"
    en = [
        ("tinyshakespeare/input.txt", d)
        for d in group_paragraphs(shakespeare_paragraphs(en_path.read_text(encoding="utf-8")), rng)
    ]
    zh = []
    for path in sorted((shared / "zh-classics" / "books").rglob("*.txt")):
        text = path.read_text(encoding="utf-8", errors="replace")
        source = path.relative_to(shared).as_posix()
        zh.extend((source, d) for d in group_paragraphs(zh_paragraphs(text), rng))
    return {"en": en, "zh": zh}


def variants(docs: list[tuple[str, list[str]]], lang: str, seed: int) -> Iterator[tuple[str, str, str]]:
    """Endless ``(id, source, text)``: copy 0 as is, later copies with shuffled paragraphs."""
    copy = 0
    while True:
        order = list(range(len(docs)))
        random.Random(f"{seed}:{lang}:order:{copy}").shuffle(order)
        for i in order:
            source, paragraphs = docs[i]
            paragraphs = list(paragraphs)
            if copy:
                random.Random(f"{seed}:{lang}:{copy}:{i}").shuffle(paragraphs)
            yield f"{lang}-{copy:03d}-{i:06d}", source, "\n\n".join(paragraphs)
        copy += 1


def build_corpus(out: Path, mb: float, files: int = 16, en_fraction: float = 0.3, seed: int = 0) -> dict:
    """Write ``files`` JSONL files holding at least ``mb`` * 10^6 bytes of text; returns the summary."""
    if not (SHARED / "tinyshakespeare" / "input.txt").is_file() or not (SHARED / "zh-classics").is_dir():
        raise SystemExit(
            f"shared data not found under {SHARED} (needs tinyshakespeare/ and zh-classics/); "
            "set CORPUSFORGE_SHARED to the folder that holds data/"
        )
    base = base_documents(SHARED, seed)
    streams = {lang: variants(docs, lang, seed) for lang, docs in base.items()}
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("part-*.jsonl"):
        old.unlink()
    target = int(mb * 1_000_000)
    text_bytes = {"en": 0, "zh": 0}
    counts = {"en": 0, "zh": 0}
    total = n = 0
    with contextlib.ExitStack() as stack:
        paths = [out / f"part-{k:03d}.jsonl" for k in range(files)]
        handles = [stack.enter_context(open(p, "w", encoding="utf-8")) for p in paths]
        while total < target:
            lang = "en" if text_bytes["en"] < en_fraction * max(total, 1) else "zh"
            doc_id, source, text = next(streams[lang])
            size = _nbytes(text)
            record = {"id": doc_id, "text": text, "lang": lang, "source": source}
            handles[n % files].write(json.dumps(record, ensure_ascii=False) + "\n")
            text_bytes[lang] += size
            counts[lang] += 1
            total += size
            n += 1
    summary = {
        "documents": n,
        "documents_by_lang": counts,
        "text_mb": round(total / 1e6, 3),
        "text_mb_by_lang": {k: round(v / 1e6, 3) for k, v in text_bytes.items()},
        "file_mb": round(sum(p.stat().st_size for p in out.glob("part-*.jsonl")) / 1e6, 3),
        "files": files,
        "base_documents": {k: len(v) for k, v in base.items()},
        "en_fraction": en_fraction,
        "seed": seed,
    }
    (out / "corpus.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="output directory (part-*.jsonl are replaced)")
    ap.add_argument("--mb", type=float, default=100.0, help="minimum text size in 10^6 bytes")
    ap.add_argument("--files", type=int, default=16, help="number of JSONL files")
    ap.add_argument("--en-fraction", type=float, default=0.3, help="share of text bytes that is English")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    summary = build_corpus(args.out, args.mb, args.files, args.en_fraction, args.seed)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    sys.exit(main())
