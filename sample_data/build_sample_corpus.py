"""Build the bundled demo corpus (``sample_data/corpus``) from the public-domain excerpts in ``sources/``.

Deterministic (seeded). English and Chinese documents, plus planted problems that every stage must
handle: boilerplate lines, PII, low-quality pages, exact and near duplicates, toxic lines, other
languages and bad records (invalid UTF-8, malformed JSON, missing or empty text, an oversized
record, a truncated gzip file, an unsupported file). Run ``python sample_data/build_sample_corpus.py``.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "sources"
OUT = HERE / "corpus"
SEED = 20261123

BOILERPLATE = [
    "This website uses cookies to improve your experience. Read our cookie policy.",
    "Please enable JavaScript to view the comments.",
    "By continuing you agree to the Terms of Use and Privacy Policy.",
    "本网站使用cookies以改善您的体验，详见隐私政策。",
]
PII_LINES = [
    "For questions write to {name}@example.org or call (555) 201-{n:04d}.",
    "Server logs showed requests from 192.168.{a}.{b} during the outage.",
    "The card on file, 4111 1111 1111 1111, was charged twice.",
    "如有疑问请联系 zhang.{name}@example.cn 或拨打 138{n:04d}{n2:04d}。",
]
TOXIC_EN = ["You are an idiot and a stupid bastard, said the drunk man in the tavern."]
TOXIC_ZH = ["他在酒馆里大声骂人：你这个傻逼，混蛋！"]
OTHER_LANGUAGES = [
    "Le marché du village ouvre chaque samedi matin. Les habitants y achètent des légumes, du pain frais "
    "et du fromage produit dans les fermes voisines. Depuis quelques années, de jeunes artisans y "
    "vendent aussi des céramiques et des bijoux, ce qui attire des visiteurs venus de toute la région. "
    "La mairie souhaite maintenant agrandir la place pour accueillir davantage de stands pendant l'été.",
    "Die Bibliothek der Stadt wurde im letzten Jahr renoviert. Neben den Büchern gibt es jetzt einen "
    "Lesesaal mit großen Fenstern, einen Bereich für Kinder und Arbeitsplätze mit Internetzugang. "
    "Die Öffnungszeiten wurden verlängert, damit auch Berufstätige abends vorbeikommen können. Viele "
    "Besucher loben die ruhige Atmosphäre und die freundlichen Mitarbeiterinnen und Mitarbeiter.",
]
SPAM_EN = "best cheap deals buy now click here " * 40
SPAM_ZH = "点击这里购买便宜商品 " * 60
BULLETS = "\n".join(f"- item {i}" for i in range(80))


def _read(name: str) -> str:
    text = (SOURCES / name).read_bytes().decode("utf-8", "ignore").lstrip("\ufeff")
    return text


def english_documents(rng: random.Random) -> list[str]:
    """Shakespeare speeches regrouped into prose-like documents of 1-3 KB."""
    speeches = [s.strip() for s in re.split(r"\n\s*\n", _read("en_shakespeare.txt")) if s.strip()]
    paragraphs = []
    for s in speeches:
        lines = s.splitlines()
        if len(lines) >= 2 and lines[0].endswith(":"):
            paragraphs.append(f"{lines[0][:-1].title()} said: " + " ".join(x.strip() for x in lines[1:]))
    docs, cur = [], []
    for p in paragraphs:
        cur.append(p)
        if sum(len(x) for x in cur) > rng.randint(1000, 3000):
            docs.append("\n\n".join(cur))
            cur = []
    return docs


def chinese_documents(rng: random.Random) -> list[str]:
    """Modern and classical Chinese prose cut on paragraph boundaries into documents of 500-1500 chars."""
    docs = []
    for name in ["zh_nahan.txt", "zh_kongshan.txt", "zh_sanzimei.txt", "zh_lunyu.txt"]:
        paras = [p.strip() for p in _read(name).splitlines() if len(p.strip()) > 1]
        cur: list[str] = []
        for p in paras:
            cur.append(p)
            if sum(len(x) for x in cur) > rng.randint(500, 1500):
                docs.append("\n".join(cur))
                cur = []
    return docs


def near_duplicate(text: str, rng: random.Random, rate: float) -> str:
    """Substitute a fraction of words (CJK: characters) to make a near-duplicate."""
    if re.search(r"[\u4e00-\u9fff]", text):
        chars = list(text)
        for i in rng.sample(range(len(chars)), max(1, int(len(chars) * rate))):
            if "\u4e00" <= chars[i] <= "\u9fff":
                chars[i] = rng.choice(
                    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处理府研质"
                )
        return "".join(chars)
    words = text.split(" ")
    for i in rng.sample(range(len(words)), max(1, int(len(words) * rate))):
        words[i] = rng.choice(["thus", "indeed", "verily", "good", "sir", "lord", "now", "then"])
    return " ".join(words)


def build(out: Path = OUT, seed: int = SEED) -> dict[str, int]:
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    en, zh = english_documents(rng), chinese_documents(rng)
    counts: dict[str, int] = {}

    def plant(docs: list[str], lang: str) -> list[str]:
        result = []
        for i, d in enumerate(docs):
            lines = d.split("\n")
            if i % 7 == 0:
                lines.insert(rng.randint(0, len(lines)), rng.choice(BOILERPLATE))
            if i % 11 == 0:
                tmpl = PII_LINES[3] if lang == "zh" else rng.choice(PII_LINES[:3])
                lines.append(
                    tmpl.format(
                        name=f"user{i}",
                        n=rng.randint(0, 9999),
                        n2=rng.randint(0, 9999),
                        a=i % 250,
                        b=(7 * i) % 250,
                    )
                )
            if i % 17 == 0:
                lines.insert(rng.randint(0, len(lines)), rng.choice(TOXIC_ZH if lang == "zh" else TOXIC_EN))
            result.append("\n".join(lines))
        return result

    en, zh = plant(en, "en"), plant(zh, "zh")
    web = out / "web"
    web.mkdir(exist_ok=True)
    with open(web / "en_pages.jsonl", "w", encoding="utf-8") as fh:
        for i, d in enumerate(en[: len(en) * 2 // 3]):
            fh.write(json.dumps({"text": d, "url": f"https://example.org/en/{i}", "source": "web-en"}) + "\n")
    zh_lines = [
        json.dumps({"text": d, "url": f"https://example.cn/zh/{i}", "source": "web-zh"}, ensure_ascii=False)
        for i, d in enumerate(zh[: len(zh) * 2 // 3])
    ]
    (web / "zh_pages.jsonl.gz").write_bytes(gzip.compress(("\n".join(zh_lines) + "\n").encode(), mtime=0))
    counts["en"], counts["zh"] = len(en), len(zh)

    # Near and exact duplicates, other languages and low-quality pages, zstd-compressed.
    extra = []
    for d in rng.sample(en[: len(en) * 2 // 3], 12) + rng.sample(zh[: len(zh) * 2 // 3], 12):
        extra.append({"text": near_duplicate(d, rng, 0.02), "source": "mirror"})
        extra.append({"text": d, "source": "mirror"})
    extra += [{"text": t, "source": "web-other"} for t in OTHER_LANGUAGES]
    extra += [{"text": t, "source": "spam"} for t in (SPAM_EN, SPAM_ZH, BULLETS, "Too short.")]
    rng.shuffle(extra)
    cctx = zstandard.ZstdCompressor(level=10)
    (out / "mirror").mkdir(exist_ok=True)
    with open(out / "mirror" / "mirror.jsonl.zst", "wb") as fh:
        fh.write(cctx.compress("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in extra).encode()))
    counts["extra"] = len(extra)

    # Plain-text books: one document per file.
    books = out / "books"
    books.mkdir(exist_ok=True)
    for i, d in enumerate(en[len(en) * 2 // 3 :][:10]):
        (books / f"en_book_{i:02d}.txt").write_text(d, encoding="utf-8")
    for i, d in enumerate(zh[len(zh) * 2 // 3 :][:10]):
        (books / f"zh_book_{i:02d}.txt").write_text(d, encoding="utf-8")

    # Parquet table of the remaining documents.
    rest = en[len(en) * 2 // 3 :][10:] + zh[len(zh) * 2 // 3 :][10:]
    (out / "tables").mkdir(exist_ok=True)
    pq.write_table(
        pa.table({"text": rest, "source": ["archive"] * len(rest)}), out / "tables" / "archive.parquet"
    )
    counts["parquet"] = len(rest)

    # Bad records and files.
    bad = out / "bad"
    bad.mkdir(exist_ok=True)
    with open(bad / "broken.jsonl", "wb") as fh:
        fh.write(b'{"text": "Invalid \xff\xfe UTF-8 bytes inside a record."}\n')
        fh.write(b'{"text": "unterminated string}\n')
        fh.write(b'["a", "list", "not", "an", "object"]\n')
        fh.write(b'{"body": "the text is under the wrong key"}\n')
        fh.write(b'{"text": "    "}\n')
        fh.write(b'{"text": 42}\n')
        fh.write(json.dumps({"text": en[0][:400], "source": "after-bad-lines"}).encode() + b"\n")
    # An oversized record (9 MiB of text) compresses to a few KiB.
    huge = (
        json.dumps({"text": "x" * (9 * 1024 * 1024)}).encode()
        + b"\n"
        + json.dumps({"text": en[1]}).encode()
        + b"\n"
    )
    (bad / "huge.jsonl.gz").write_bytes(gzip.compress(huge, mtime=0))
    full = gzip.compress(("".join(json.dumps({"text": d}) + "\n" for d in en[:3])).encode(), mtime=0)
    (bad / "truncated.jsonl.gz").write_bytes(full[: len(full) // 2])
    (bad / "image.bin").write_bytes(bytes(range(256)))
    return counts


if __name__ == "__main__":
    print(json.dumps(build()))
