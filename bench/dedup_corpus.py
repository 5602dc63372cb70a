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
Those edit-spec families are the ``spec`` section (family ``<lang>-f<n>``).

Three extra sections (``generate(light=, chains=, passages=)``, per language; the CLIs' defaults
turn them on). Their base documents are disjoint from the edit-spec ones; the English ones start with
the other English prose under ``--data`` (the CC BY 4.0 and MIT licence texts), then Shakespeare; the
main sources are first cleared of chunks sharing >= 10 % of their shingles with an earlier chunk
(zh-classics holds some chapters twice). Their edits draw words from every English source
(Shakespeare, licences, ``SOURCES.md``, the English titles of ``zh-classics/index.csv``), resp.
characters from the chunks of all the Chinese books. ``edit`` carries ``source`` and more fields:

* ``light`` (``<lang>-light<n>``): an original plus 1-3 *light edits*, all duplicates of it:
  ``op`` (substitute / delete / insert / mixed) on ``rate`` = 1-6 % of the tokens (the op x rate
  grid round-robin), one boilerplate line added as ``line`` = header or footer, doubled spaces
  (Chinese: also ideographic indentation) and full-width/half-width changes that NFKC folds back.
  The original has the family's highest quality, so it is the survivor;
* ``chain`` (``<lang>-chain<n>``): A (original, highest quality), B (``role`` B: A with 3-5 % of its
  tokens edited, a duplicate of A) and C (``role`` C: B with 4-6 % more, NOT a duplicate of A;
  rates for 5-gram shingles, scaled by 5 / n for n-grams),
  redrawn until the true shingle Jaccards give J(A,B) >= 0.6, J(B,C) >= 0.6 and J(A,C) < 0.45
  (stored as ``jaccard_ab`` / ``jaccard_bc`` / ``jaccard_ac``). The pair (B, C) is ambiguous: it is a
  "don't care" pair (``ignored_pairs``), neither rewarded nor penalised when scoring;
* ``passage`` (``<lang>-passage<n>``): D1 = P + X1 and D2 = P + X2 (``role`` D1 / D2), P a passage
  that is ``rate`` = 40-50 % of each document, X1 and X2 unrelated text; NOT duplicates
  (``jaccard``: their true shingle Jaccard).

Usage: ``python bench/dedup_corpus.py --out /tmp/dedup_corpus.jsonl [--families 300] [--light 90]
[--chains 30] [--passages 15] [--seed 7]``.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipelines.dedup.shingles import shingles

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# Default sizes of the benchmark corpus (per language); English text allows about 575 base documents.
DEFAULT_FAMILIES = 300
DEFAULT_SINGLETONS = 100
DEFAULT_LIGHT = 90
DEFAULT_CHAINS = 30
DEFAULT_PASSAGES = 15

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


def _fallback_chunks(lang: str, count: int, rng: random.Random) -> list[list[str]]:
    gen = _fallback_paragraphs(lang, rng)
    docs: list[list[str]] = []
    if count <= 0:
        return docs
    for doc in _chunks(gen, rng):
        docs.append(doc)
        if len(docs) >= count:
            break
    return docs


def source_documents(
    lang: str, count: int, rng: random.Random, data: Path | None
) -> list[tuple[str, list[str]]]:
    """All ``(source name, paragraphs)`` chunks of the main source of ``lang``, in source order.

    English: whole speeches of ``tinyshakespeare``; Chinese: at most 6 chunks per ``zh-classics`` book
    (so the corpus spans many books and styles), the source being ``zh-classics/books/<book>``. Without the
    data: ``count`` chunks of seeded pseudo-text (source ``fallback``).
    """
    if data is not None and lang == "en" and (data / "tinyshakespeare" / "input.txt").is_file():
        chunks = _chunks(_shakespeare_paragraphs(data / "tinyshakespeare" / "input.txt"), rng)
        return [("tinyshakespeare", doc) for doc in chunks]
    if data is not None and lang == "zh" and (data / "zh-classics" / "books").is_dir():
        docs: list[tuple[str, list[str]]] = []
        for book in sorted((data / "zh-classics" / "books").rglob("*.txt")):
            docs.extend(
                (f"zh-classics/books/{book.stem}", d) for d in list(_chunks(_zh_paragraphs([book]), rng))[:6]
            )
        return docs
    return [("fallback", doc) for doc in _fallback_chunks(lang, count, rng)]


def _spread(n: int, count: int) -> list[int]:
    """``count`` distinct indices spread evenly over ``range(n)`` (``count <= n``)."""
    return [int(i * n / count) for i in range(count)]


def base_documents(lang: str, count: int, rng: random.Random, data: Path | None) -> list[list[str]]:
    """``count`` base documents of ``lang`` as paragraph lists, spread over the whole source."""
    docs = source_documents(lang, count, rng, data)
    if len(docs) < count:
        raise ValueError(f"only {len(docs)} {lang} base documents available, {count} requested")
    return [docs[i][1] for i in _spread(len(docs), count)] if count else []


def drop_overlapping(
    docs: list[tuple[str, list[str]]], ngram: int = 5, cjk_ngram: int = 5, max_shared: float = 0.1
) -> list[tuple[str, list[str]]]:
    """``docs`` without every chunk that shares ``max_shared`` or more of its shingles with one earlier
    chunk: the sources hold the same text more than once (zh-classics has whole chapters in two
    books), and such unlabelled copies in different families would be scored as false merges."""
    owner: dict[str, int] = {}
    kept = []
    for i, (name, doc) in enumerate(docs):
        sh = shingles("\n\n".join(doc), ngram, cjk_ngram)
        shared = Counter(owner[x] for x in sh if x in owner)
        if shared and shared.most_common(1)[0][1] >= max_shared * len(sh):
            continue
        for x in sh:
            owner.setdefault(x, i)
        kept.append((name, doc))
    return kept


def _licence_paragraphs(text: str) -> Iterator[str]:
    """Prose paragraphs of a hard-wrapped plain-text licence (rules and headings of < 8 words dropped)."""
    for block in text.split("\n\n"):
        para = " ".join(block.split())
        if len(re.findall(r"[A-Za-z]{2,}", para)) >= 8:
            yield para


def extra_english_sources(data: Path | None) -> list[tuple[str, str]]:
    """``(name, text)`` of the English prose in ``data`` besides Shakespeare: the licence texts
    (CC BY 4.0 of ldnoobw, MIT of zh-classics). Used for base documents of the extra sections."""
    if data is None:
        return []
    out = []
    for name in ("ldnoobw/LICENSE", "zh-classics/LICENSE"):
        path = data / name
        if path.is_file():
            out.append((name, path.read_text(encoding="utf-8", errors="replace")))
    return out


def english_vocab_texts(data: Path | None) -> list[str]:
    """English texts whose words feed the edits of the extra sections, besides the base documents:
    the licences, ``SOURCES.md`` and the English book titles of ``zh-classics/index.csv``."""
    texts = [text for _, text in extra_english_sources(data)]
    if data is None:
        return texts
    if (data / "SOURCES.md").is_file():
        texts.append((data / "SOURCES.md").read_text(encoding="utf-8", errors="replace"))
    index = data / "zh-classics" / "index.csv"
    if index.is_file():
        with index.open(encoding="utf-8-sig", errors="replace", newline="") as fh:
            texts.extend(row[1] for row in csv.reader(fh) if len(row) > 1)
    return texts


# -- edits ---------------------------------------------------------------------------------------


def _token_spans(text: str, lang: str) -> list[tuple[int, int]]:
    pattern = _WORD if lang == "en" else _CJK
    return [m.span() for m in pattern.finditer(text)]


def edit_tokens(text: str, lang: str, kind: str, rate: float, vocab: list[str], rng: random.Random) -> str:
    """Substitute, delete or insert ``round(rate * tokens)`` (at least one) random tokens; ``mixed``:
    each of them substituted, deleted or inserted at random."""
    spans = _token_spans(text, lang)
    k = max(1, round(rate * len(spans)))
    chosen = sorted(rng.sample(range(len(spans)), k))
    sep = " " if lang == "en" else ""
    out, pos = [], 0
    for i in chosen:
        start, end = spans[i]
        out.append(text[pos:start])
        op = rng.choice(TOKEN_EDITS) if kind == "mixed" else kind
        if op == "substitute":
            out.append(rng.choice(vocab))
            pos = end
        elif op == "delete":
            pos = end + 1 if lang == "en" and text[end : end + 1] == " " else end
        elif op == "insert":
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


# -- extra sections: light edits, chains, shared passages -----------------------------------------

LIGHT_OPS = ("substitute", "delete", "insert", "mixed")
LIGHT_RATES = (0.01, 0.02, 0.03, 0.04, 0.05, 0.06)
LIGHT_GRID = tuple((op, rate) for rate in LIGHT_RATES for op in LIGHT_OPS)

CHAIN_MIN_AB = 0.6  # true shingle Jaccard: B is a clear light edit of A ...
CHAIN_MIN_BC = 0.6  # ... C a clear light edit of B ...
CHAIN_MAX_AC = 0.45  # ... but C is far from A
CHAIN_TRIES = 400

PASSAGE_SHARE = (0.4, 0.5)  # fraction of each document (characters) that is the shared passage

SECTIONS = {"f": "spec", "light": "light", "chain": "chain", "passage": "passage"}

_FULLWIDTH_OFFSET = 0xFEE0  # "!".."~" -> "！".."～" (NFKC folds them back)
_ZH_HALFWIDTH = {"，": ",", "：": ":", "；": ";", "！": "!", "？": "?", "（": "(", "）": ")"}


def jaccard(a: set[str], b: set[str]) -> float:
    """Jaccard index of two sets (1.0 for two empty sets)."""
    return len(a & b) / len(a | b) if a or b else 1.0


def to_fullwidth(text: str) -> str:
    """ASCII letters, digits and punctuation to their full-width forms (NFKC folds them back)."""
    return "".join(chr(ord(c) + _FULLWIDTH_OFFSET) if "!" <= c <= "~" else c for c in text)


def double_spaces(text: str, lang: str, rng: random.Random) -> str:
    """Whitespace noise that shingling ignores: English: 10-50 % of the spaces doubled; Chinese: the
    spaces doubled, paragraphs indented with two ideographic spaces, two spaces after some sentences."""
    p = rng.uniform(0.1, 0.5)
    text = re.sub(" ", lambda m: "  " if rng.random() < p else " ", text)
    if lang == "en":
        return text
    text = re.sub(r"(?<=[。！？])", lambda m: "  " if rng.random() < p else "", text)
    return "\n".join(
        "\u3000\u3000" + line if line and rng.random() < 0.5 else line for line in text.split("\n")
    )


def widen(text: str, lang: str, rng: random.Random) -> str:
    """Width changes that NFKC undoes. English: 3-15 % of the words (digits and punctuation included)
    in full-width forms. Chinese: full-width punctuation to ASCII and ASCII to full-width, each
    character with probability 0.2-0.6."""
    if lang == "en":
        p = rng.uniform(0.03, 0.15)
        return _WORD.sub(lambda m: to_fullwidth(m.group()) if rng.random() < p else m.group(), text)
    p = rng.uniform(0.2, 0.6)
    out = []
    for c in text:
        if c in _ZH_HALFWIDTH and rng.random() < p:
            c = _ZH_HALFWIDTH[c]
        elif "!" <= c <= "~" and rng.random() < p:
            c = to_fullwidth(c)
        out.append(c)
    return "".join(out)


def light_variant(
    text: str, lang: str, op: str, rate: float, vocab: list[str], rng: random.Random
) -> tuple[str, str]:
    """A light edit of ``text``: ``op`` (substitute / delete / insert / mixed) on ``rate`` of the tokens,
    one boilerplate line added as header or footer, doubled spaces and width changes.
    Returns ``(text, "header" or "footer")``."""
    edited = edit_tokens(text, lang, op, rate, vocab, rng)
    line = rng.choice(BOILERPLATE[lang])
    where = rng.choice(("header", "footer"))
    edited = f"{line}\n{edited}" if where == "header" else f"{edited}\n{line}"
    return widen(double_spaces(edited, lang, rng), lang, rng), where


def chain_triple(
    text: str, lang: str, vocab: list[str], rng: random.Random, ngram: int = 5, cjk_ngram: int = 5
) -> tuple[str, str, dict[str, Any]] | None:
    """``(B, C, info)`` for A = ``text``: B = A with 3-5 % of its tokens edited, C = B with 4-6 % more
    (rates for 5-grams, scaled by 5 / n for other shingle sizes n), redrawn until the true shingle
    Jaccards satisfy J(A,B) >= ``CHAIN_MIN_AB``, J(B,C) >= ``CHAIN_MIN_BC`` and J(A,C) <
    ``CHAIN_MAX_AC``; None if ``CHAIN_TRIES`` draws all fail."""
    sa = shingles(text, ngram, cjk_ngram)
    scale = 5 / (ngram if lang == "en" else cjk_ngram)
    for _ in range(CHAIN_TRIES):
        op1, r1 = rng.choice(("substitute", "mixed")), round(scale * rng.uniform(0.03, 0.05), 4)
        b = edit_tokens(text, lang, op1, r1, vocab, rng)
        sb = shingles(b, ngram, cjk_ngram)
        jab = jaccard(sa, sb)
        if jab < CHAIN_MIN_AB:
            continue
        op2, r2 = rng.choice(("substitute", "mixed")), round(scale * rng.uniform(0.04, 0.06), 4)
        c = edit_tokens(b, lang, op2, r2, vocab, rng)
        sc = shingles(c, ngram, cjk_ngram)
        jbc, jac = jaccard(sb, sc), jaccard(sa, sc)
        if jbc >= CHAIN_MIN_BC and jac < CHAIN_MAX_AC:
            info = {"op_b": op1, "rate_b": r1, "op_c": op2, "rate_c": r2}
            info.update(jaccard_ab=round(jab, 4), jaccard_bc=round(jbc, 4), jaccard_ac=round(jac, 4))
            return b, c, info
    return None


def _cut(text: str, n: int, lang: str) -> str:
    """A prefix of ``text`` of at most ``n`` characters, ended at a space (English) or a punctuation
    mark (Chinese) in its last 10 % when there is one."""
    if len(text) <= n:
        return text
    ends = " \n" if lang == "en" else "。！？；，、\n"
    cut = max(text.rfind(ch, 0, n) for ch in ends)
    if cut >= 0.9 * n:
        return text[: cut + (lang != "en")].rstrip()
    return text[:n]


def passage_pair(
    passage: list[str], other: list[str], lang: str, rng: random.Random
) -> tuple[str, str, float]:
    """``(D1, D2, share)``: D1 = P + X1, D2 = P + X2, P from ``passage``, X1 and X2 the two halves of
    ``other`` (unrelated to P and to each other), P trimmed or the halves trimmed so that P is a drawn
    ``PASSAGE_SHARE`` of each document's characters; ``share`` is the mean achieved fraction."""
    target = rng.uniform(*PASSAGE_SHARE)
    x = "\n\n".join(other)
    x1 = _cut(x, len(x) // 2, lang)
    x2 = x[len(x1) :].strip()
    lx = min(len(x1), len(x2))
    x1, x2 = _cut(x1, lx, lang), _cut(x2, lx, lang)
    p = "\n\n".join(passage)
    want = int(target / (1 - target) * min(len(x1), len(x2)))
    if len(p) >= want:
        p = _cut(p, want, lang)
    else:
        lx = int(len(p) * (1 - target) / target)
        x1, x2 = _cut(x1, lx, lang), _cut(x2, lx, lang)
    d1, d2 = f"{p}\n\n{x1}", f"{p}\n\n{x2}"
    return d1, d2, (len(p) / len(d1) + len(p) / len(d2)) / 2


def section_of(rec: dict[str, Any]) -> str:
    """The corpus section of a record: ``spec`` (edit-spec families and singletons), ``light``,
    ``chain`` or ``passage`` (from its family name)."""
    return SECTIONS[re.sub(r"\d+$", "", rec["family"].split("-", 1)[1])]


def ignored_pairs(records: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """The "don't care" pairs: (B, C) of every chain (sorted id pairs)."""
    roles: dict[str, dict[str, str]] = {}
    for r in records:
        if r["edit"]["kind"] == "chain":
            roles.setdefault(r["family"], {})[r["edit"]["role"]] = r["id"]
    return {(min(m["B"], m["C"]), max(m["B"], m["C"])) for m in roles.values() if "B" in m and "C" in m}


# -- corpus --------------------------------------------------------------------------------------


def _vocab(docs: list[list[str]], lang: str) -> list[str]:
    text = "\n".join(p for d in docs for p in d)
    if lang == "en":
        return sorted({w.strip(".,;:!?'\"()-").lower() for w in text.split()} - {""})
    return _CJK.findall(text)  # with repetition: substitutes follow the character frequencies


def _extra_vocab(pool: list[tuple[str, list[str]]], lang: str, data: Path | None) -> list[str]:
    """Edit vocabulary of the extra sections, from every source of ``lang``: English: the distinct
    alphabetic words of all base chunks, the licences, ``SOURCES.md`` and the English book titles;
    Chinese: the CJK characters of the chunks of all books, with repetition."""
    if lang != "en":
        return [c for _, doc in pool for p in doc for c in _CJK.findall(p)]
    texts = [p for _, doc in pool for p in doc] + english_vocab_texts(data)
    words = {w.lower() for t in texts for w in re.findall(r"[A-Za-z]+(?:'[a-z]+)?", t)}
    return sorted(words)


def generate(
    families: int = 300,
    singletons: int = 200,
    seed: int = 7,
    data: Path | None = DEFAULT_DATA,
    light: int = 0,
    chains: int = 0,
    passages: int = 0,
    ngram: int = 5,
    cjk_ngram: int = 5,
) -> list[dict[str, Any]]:
    """The labelled corpus as a list of records (see the module docstring); same args -> same corpus.

    ``light``, ``chains`` and ``passages`` (per language, 0 by default) add the extra sections; with
    all three 0 the corpus is the edit-spec corpus alone. ``ngram`` / ``cjk_ngram`` are the shingle
    sizes with which the chain Jaccards are measured.
    """
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

    def add(lang: str, family: str, text: str, cluster: str | None, edit: dict, quality: float) -> str:
        doc_id = new_id(lang)
        records.append(
            {
                "id": doc_id,
                "text": text,
                "cluster": cluster or doc_id,
                "lang": lang,
                "edit": edit,
                "family": family,
                "quality": round(quality, 4),
            }
        )
        return doc_id

    for lang in ("en", "zh"):
        n_old, n_new = families + singletons, light + chains + 2 * passages
        if n_new == 0:
            bases = base_documents(lang, n_old, rng, data)
            new_bases: list[tuple[str, list[str]]] = []
        else:
            # Extra sections take their own base documents: the other English sources first, then
            # chunks of the main source spread over it, disjoint from the edit-spec families' bases.
            pool = drop_overlapping(source_documents(lang, n_old + n_new, rng, data), ngram, cjk_ngram)
            extras = [
                (name, doc)
                for name, text in (extra_english_sources(data) if lang == "en" else [])
                for doc in _chunks(_licence_paragraphs(text), rng)
            ][:n_new]
            n_main = n_new - len(extras)
            if len(pool) < n_old + n_main:
                raise ValueError(
                    f"only {len(pool) + len(extras)} {lang} base documents available, {n_old + n_new} requested"
                )
            picks = [pool[i] for i in _spread(len(pool), n_old + n_main)]
            reserved = set(_spread(len(picks), n_main)) if n_main else set()
            bases = [doc for i, (_, doc) in enumerate(picks) if i not in reserved]
            main_new = [picks[i] for i in sorted(reserved)]
            rng.shuffle(main_new)
            new_bases = extras + main_new
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
        if not new_bases:
            continue
        extra_vocab = _extra_vocab(pool, lang, data)
        texts = [(name, unicodedata.normalize("NFC", "\n\n".join(doc)), doc) for name, doc in new_bases]
        light_bases, texts = texts[:light], texts[light:]
        chain_bases, passage_bases = texts[:chains], texts[chains:]
        grid = 0
        for i, (source, text, _) in enumerate(light_bases):
            family = f"{lang}-light{i:04d}"
            # The original has the highest quality of its family, so it is the survivor: recall is
            # "each light edit is found as a duplicate of its original".
            origin = {"kind": "original", "rate": 0.0, "source": source}
            base_id = add(lang, family, text, None, origin, 0.95 + 0.05 * rng.random())
            for _ in range(rng.randint(1, 3)):
                op, rate = LIGHT_GRID[grid % len(LIGHT_GRID)]
                grid += 1
                variant, where = light_variant(text, lang, op, rate, extra_vocab, rng)
                edit = {"kind": "light", "rate": rate, "op": op, "line": where, "source": source}
                add(lang, family, variant, base_id, edit, 0.9 * rng.random())
        for i, (source, text, _) in enumerate(chain_bases):
            triple = chain_triple(text, lang, extra_vocab, rng, ngram, cjk_ngram)
            if triple is None:
                continue
            b, c, info = triple
            family = f"{lang}-chain{i:04d}"
            origin = {"kind": "original", "rate": 0.0, "source": source}
            a_id = add(lang, family, text, None, origin, 0.95 + 0.05 * rng.random())
            edit_b = {"kind": "chain", "rate": info["rate_b"], "role": "B", "source": source, **info}
            add(lang, family, b, a_id, edit_b, 0.9 * rng.random())
            edit_c = {"kind": "chain", "rate": info["rate_c"], "role": "C", "source": source, **info}
            add(lang, family, c, None, edit_c, 0.9 * rng.random())
        for i in range(len(passage_bases) // 2):
            (src_p, _, doc_p), (src_x, _, doc_x) = passage_bases[2 * i : 2 * i + 2]
            d1, d2, share = passage_pair(doc_p, doc_x, lang, rng)
            d1, d2, share = (
                unicodedata.normalize("NFC", d1),
                unicodedata.normalize("NFC", d2),
                round(share, 4),
            )
            j = round(jaccard(shingles(d1, ngram, cjk_ngram), shingles(d2, ngram, cjk_ngram)), 4)
            family = f"{lang}-passage{i:04d}"
            for role, text in (("D1", d1), ("D2", d2)):
                edit = {
                    "kind": "passage",
                    "rate": share,
                    "role": role,
                    "jaccard": j,
                    "source": f"{src_p}+{src_x}",
                }
                add(lang, family, text, None, edit, rng.random())
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
    ap.add_argument("--families", type=int, default=DEFAULT_FAMILIES, help="edit-spec families per language")
    ap.add_argument(
        "--singletons", type=int, default=DEFAULT_SINGLETONS, help="unrelated singletons per language"
    )
    ap.add_argument("--light", type=int, default=DEFAULT_LIGHT, help="light-edit families per language")
    ap.add_argument("--chains", type=int, default=DEFAULT_CHAINS, help="chains A-B-C per language")
    ap.add_argument(
        "--passages", type=int, default=DEFAULT_PASSAGES, help="shared-passage pairs per language"
    )
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = ap.parse_args()
    records = generate(
        args.families,
        args.singletons,
        args.seed,
        args.data,
        light=args.light,
        chains=args.chains,
        passages=args.passages,
    )
    write_jsonl(records, args.out)
    print(json.dumps({"out": str(args.out), "documents": len(records)}))


if __name__ == "__main__":
    main()
