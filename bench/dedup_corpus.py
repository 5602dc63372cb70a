"""Deterministic labelled near-duplicate corpus (English + Chinese) for the dedup quality benchmark.

Base documents (~1-3 KB of UTF-8) are disjoint chunks of real text: whole speeches of
``tinyshakespeare/input.txt`` and paragraphs of the ``zh-classics`` books under ``--data``
(``../shared/data`` by default). Without that folder a seeded pseudo-text from a small built-in
vocabulary is used so the generator runs anywhere (the numbers are then only a smoke test).

Each *family* is one base document plus 1-4 variants made by the family's edit spec (specs are
assigned round-robin), each variant an independent random draw. Edits act on tokens: words for English, CJK
characters for Chinese. Ground truth (field ``cluster``):

* duplicates of the base (same cluster): ``exact`` copy; ``format`` (same text re-wrapped, case and
  punctuation changed); ``substitute`` / ``delete`` / ``insert`` of 1 %, 3 % or 5 % of the tokens
  (random tokens of the same language); ``boilerplate`` (1-3 header/footer lines added);
  ``reorder`` (paragraphs shuffled); ``truncate`` keeping 90 % or 80 % of the characters;
  ``mixed`` (boilerplate + 1 % substitutions + one paragraph swap);
* NOT duplicates (each its own cluster): ``substitute`` / ``delete`` / ``insert`` of 10 % or 20 % of
  the tokens. At those rates a changed token every 5-10 tokens leaves a text that is no longer a copy
  of its base; they are the hard negatives that keep a detector honest.

Containment (a short excerpt of a long document) is deliberately absent: Jaccard-based dedup does
not target it and calling it either way would bias the benchmark. Unrelated singletons (bases
without variants) are added. Every document has ``id`` (random, so the base is not always the
smallest id), ``text``, ``cluster``, ``lang``, ``edit`` (``{"kind", "rate"}``; the base is
``original``), ``family`` and ``quality`` (a random score in [0, 1) for the survivor rule).

Usage: ``python bench/dedup_corpus.py --out /tmp/dedup_corpus.jsonl [--families 200] [--seed 7]``.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

DUP_RATES = (0.01, 0.03, 0.05)
NON_DUP_RATES = (0.10, 0.20)
TOKEN_EDITS = ("substitute", "delete", "insert")

# (kind, rate, is_duplicate); rate is the fraction of tokens edited, or of characters kept (truncate).
EDIT_SPECS: tuple[tuple[str, float, bool], ...] = (
    ("exact", 0.0, True),
    ("format", 0.0, True),
    *((k, r, True) for k in TOKEN_EDITS for r in DUP_RATES),
    ("boilerplate", 0.0, True),
    ("reorder", 0.0, True),
    ("truncate", 0.9, True),
    ("truncate", 0.8, True),
    ("mixed", 0.01, True),
    *((k, r, False) for k in TOKEN_EDITS for r in NON_DUP_RATES),
)

BOILERPLATE = {
    "en": [
        "Share this page: Facebook | Twitter | Email | Print",
        "Copyright (c) 2024 Example Media Group. All rights reserved.",
        "Subscribe to our newsletter to get more stories like this one every week.",
        "Advertisement",
        "Related reading: more from our archive of classic texts",
        "Posted in Literature, Drama | Leave a comment",
    ],
    "zh": [
        "版权所有 © 2024 古籍文库网 保留所有权利",
        "点击这里订阅本站每周更新的电子期刊",
        "分享到：微博 | 微信 | QQ空间 | 打印本页",
        "广告",
        "相关阅读：更多经典文献请访问本站首页",
        "本文由网友上传，仅供学习交流使用",
    ],
}

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"\S+")

_FALLBACK_EN = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "that",
    "it",
    "is",
    "was",
    "he",
    "for",
    "on",
    "are",
    "as",
    "with",
    "his",
    "they",
    "at",
    "be",
    "this",
    "have",
    "from",
    "or",
    "one",
    "had",
    "by",
    "word",
    "but",
    "not",
    "what",
    "all",
    "were",
    "we",
    "when",
    "your",
    "can",
    "said",
    "there",
    "use",
    "an",
    "each",
    "which",
    "she",
    "do",
    "how",
    "their",
    "if",
    "will",
    "up",
    "other",
    "about",
    "out",
    "many",
    "then",
    "them",
    "these",
    "so",
    "some",
    "her",
    "would",
    "make",
    "like",
    "him",
    "into",
    "time",
    "has",
    "look",
    "two",
    "more",
    "write",
    "go",
    "see",
    "number",
    "no",
    "way",
    "could",
    "people",
    "my",
    "than",
    "first",
    "water",
    "been",
    "call",
    "who",
    "oil",
    "its",
    "now",
    "find",
    "long",
    "down",
    "day",
    "did",
    "get",
    "come",
    "made",
    "may",
    "part",
    "river",
    "king",
    "castle",
    "garden",
    "letter",
    "morning",
    "winter",
    "soldier",
    "merchant",
]
_FALLBACK_ZH = (
    "天地玄黄宇宙洪荒日月盈昃辰宿列张寒来暑往秋收冬藏闰余成岁律吕调阳云腾致雨露结为霜金生丽水玉出昆冈"
    "剑号巨阙珠称夜光果珍李柰菜重芥姜海咸河淡鳞潜羽翔龙师火帝鸟官人皇始制文字乃服衣裳推位让国有虞陶唐"
    "吊民伐罪周发殷汤坐朝问道垂拱平章爱育黎首臣伏戎羌遐迩一体率宾归王鸣凤在竹白驹食场化被草木赖及万方"
)


# -- base documents -------------------------------------------------------------------------------


def _chunks(
    paragraphs: Iterator[str], rng: random.Random, lo: int = 1000, hi: int = 3000
) -> Iterator[list[str]]:
    """Group consecutive paragraphs into documents of ``lo``-``hi`` UTF-8 bytes (target drawn per doc)."""
    target, cur, size = rng.randint(lo, hi), [], 0
    for para in paragraphs:
        n = len(para.encode("utf-8"))
        if n > hi:
            continue
        if cur and size + n > target:
            if size >= lo:
                yield cur
            target, cur, size = rng.randint(lo, hi), [], 0
        cur.append(para)
        size += n + 2
    if size >= lo:
        yield cur


def _shakespeare_paragraphs(path: Path) -> Iterator[str]:
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        if block.strip():
            yield block.strip()


def _zh_paragraphs(books: list[Path]) -> Iterator[str]:
    for book in books:
        text = book.read_text(encoding="utf-8", errors="replace").lstrip("\ufeff")
        for line in text.splitlines():
            line = line.strip()
            if len(_CJK.findall(line)) < 20:
                continue  # headings, blank lines, non-Chinese lines
            # Long paragraphs are split after sentence ends into pieces of <= ~600 characters.
            piece = ""
            for sent in re.split(r"(?<=[。！？])", line):
                if piece and len(piece) + len(sent) > 600:
                    yield piece
                    piece = ""
                piece += sent
            if piece:
                yield piece


def _fallback_paragraphs(lang: str, rng: random.Random) -> Iterator[str]:
    while True:
        if lang == "en":
            words = [rng.choice(_FALLBACK_EN) for _ in range(rng.randint(20, 60))]
            yield " ".join(words).capitalize() + "."
        else:
            yield "".join(rng.choice(_FALLBACK_ZH) for _ in range(rng.randint(40, 120))) + "。"


def base_documents(lang: str, count: int, rng: random.Random, data: Path | None) -> list[list[str]]:
    """``count`` base documents of ``lang`` as paragraph lists, spread over the whole source."""
    if data is not None and lang == "en" and (data / "tinyshakespeare" / "input.txt").is_file():
        docs = list(_chunks(_shakespeare_paragraphs(data / "tinyshakespeare" / "input.txt"), rng))
    elif data is not None and lang == "zh" and (data / "zh-classics" / "books").is_dir():
        books = sorted((data / "zh-classics" / "books").rglob("*.txt"))
        docs = []
        # At most a few documents per book, so the corpus spans many books and styles.
        for book in books:
            docs.extend(list(_chunks(_zh_paragraphs([book]), rng))[:6])
    else:
        gen = _fallback_paragraphs(lang, rng)
        docs = []
        for doc in _chunks(gen, rng):
            docs.append(doc)
            if len(docs) >= count:
                break
    if len(docs) < count:
        raise ValueError(f"only {len(docs)} {lang} base documents available, {count} requested")
    step = len(docs) / count
    return [docs[int(i * step)] for i in range(count)]


# -- edits ---------------------------------------------------------------------------------------


def _token_spans(text: str, lang: str) -> list[tuple[int, int]]:
    pattern = _WORD if lang == "en" else _CJK
    return [m.span() for m in pattern.finditer(text)]


def edit_tokens(text: str, lang: str, kind: str, rate: float, vocab: list[str], rng: random.Random) -> str:
    """Substitute, delete or insert ``round(rate * tokens)`` (at least one) random tokens."""
    spans = _token_spans(text, lang)
    k = max(1, round(rate * len(spans)))
    chosen = sorted(rng.sample(range(len(spans)), k))
    sep = " " if lang == "en" else ""
    out, pos = [], 0
    for i in chosen:
        start, end = spans[i]
        out.append(text[pos:start])
        if kind == "substitute":
            out.append(rng.choice(vocab))
            pos = end
        elif kind == "delete":
            pos = end + 1 if lang == "en" and text[end : end + 1] == " " else end
        elif kind == "insert":
            out.append(rng.choice(vocab) + sep)
            pos = start
        else:
            raise ValueError(kind)
    out.append(text[pos:])
    return "".join(out)


def _reformat(paragraphs: list[str], lang: str, rng: random.Random) -> str:
    """Same words, different surface: re-wrapped lines, changed case and punctuation, full-width forms."""
    text = "\n\n".join(paragraphs)
    if lang == "en":
        words = text.split()
        lines, line = [], []
        for w in words:
            line.append(w.upper() if rng.random() < 0.05 else w)
            if len(line) >= rng.randint(6, 14):
                lines.append(" ".join(line))
                line = []
        lines.append(" ".join(line))
        return "\n".join(lines).replace(",", " ,").replace(";", " ;")
    text = text.replace("，", ",").replace("。", ". ")
    lines, pos = [], 0
    while pos < len(text):
        step = rng.randint(15, 40)
        lines.append(text[pos : pos + step])
        pos += step
    return "\n".join(lines)


def _truncate(text: str, keep: float) -> str:
    cut = int(len(text) * keep)
    space = text.rfind(" ", 0, cut)
    return text[: space if space > cut * 0.9 else cut]


def make_variant(
    paragraphs: list[str], lang: str, kind: str, rate: float, vocab: list[str], rng: random.Random
) -> str:
    """Apply one edit spec to a base document."""
    text = "\n\n".join(paragraphs)
    if kind == "exact":
        return text
    if kind == "format":
        return _reformat(paragraphs, lang, rng)
    if kind in TOKEN_EDITS:
        return edit_tokens(text, lang, kind, rate, vocab, rng)
    if kind == "boilerplate":
        lines = rng.sample(BOILERPLATE[lang], rng.randint(1, 3))
        head = [line for line in lines if rng.random() < 0.5]
        tail = [line for line in lines if line not in head]
        return "\n".join([*head, text, *tail])
    if kind == "reorder":
        paras = paragraphs[:]
        while len(paras) > 1 and paras == paragraphs:
            rng.shuffle(paras)
        return "\n\n".join(paras)
    if kind == "truncate":
        return _truncate(text, rate)
    if kind == "mixed":
        paras = paragraphs[:]
        if len(paras) > 1:
            i = rng.randrange(len(paras) - 1)
            paras[i], paras[i + 1] = paras[i + 1], paras[i]
        edited = edit_tokens("\n\n".join(paras), lang, "substitute", rate, vocab, rng)
        return "\n".join([edited, rng.choice(BOILERPLATE[lang])])
    raise ValueError(f"unknown edit kind {kind!r}")


# -- corpus --------------------------------------------------------------------------------------


def _vocab(docs: list[list[str]], lang: str) -> list[str]:
    text = "\n".join(p for d in docs for p in d)
    if lang == "en":
        return sorted({w.strip(".,;:!?'\"()-").lower() for w in text.split()} - {""})
    return _CJK.findall(text)  # with repetition: substitutes follow the character frequencies


def generate(
    families: int = 300, singletons: int = 200, seed: int = 7, data: Path | None = DEFAULT_DATA
) -> list[dict[str, Any]]:
    """The labelled corpus as a list of records (see the module docstring); same args -> same corpus."""
    if data is not None and not data.is_dir():
        data = None
    records: list[dict[str, Any]] = []
    used_ids: set[str] = set()
    rng = random.Random(seed)

    def new_id(lang: str) -> str:
        while True:
            doc_id = f"{lang}-{rng.getrandbits(48):012x}"
            if doc_id not in used_ids:
                used_ids.add(doc_id)
                return doc_id

    for lang in ("en", "zh"):
        bases = base_documents(lang, families + singletons, rng, data)
        vocab = _vocab(bases, lang)
        for f, paragraphs in enumerate(bases):
            family = f"{lang}-f{f:04d}"
            base_id = new_id(lang)
            base_text = unicodedata.normalize("NFC", "\n\n".join(paragraphs))
            records.append(
                {
                    "id": base_id,
                    "text": base_text,
                    "cluster": base_id,
                    "lang": lang,
                    "edit": {"kind": "original", "rate": 0.0},
                    "family": family,
                    "quality": round(rng.random(), 4),
                }
            )
            if f >= families:
                continue  # an unrelated singleton
            kind, rate, is_dup = EDIT_SPECS[f % len(EDIT_SPECS)]
            for _ in range(rng.randint(1, 4)):
                doc_id = new_id(lang)
                records.append(
                    {
                        "id": doc_id,
                        "text": make_variant(paragraphs, lang, kind, rate, vocab, rng),
                        "cluster": base_id if is_dup else doc_id,
                        "lang": lang,
                        "edit": {"kind": kind, "rate": rate},
                        "family": family,
                        "quality": round(rng.random(), 4),
                    }
                )
    rng.shuffle(records)
    return records


def write_jsonl(records: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/dedup_corpus.jsonl"))
    ap.add_argument("--families", type=int, default=300, help="families per language")
    ap.add_argument("--singletons", type=int, default=200, help="unrelated singletons per language")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = ap.parse_args()
    records = generate(args.families, args.singletons, args.seed, args.data)
    write_jsonl(records, args.out)
    print(json.dumps({"out": str(args.out), "documents": len(records)}))


if __name__ == "__main__":
    main()
