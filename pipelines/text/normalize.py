"""Text normalisation for the cleaning stage, and the canonical form hashed by exact dedup.

``normalize_text`` applies, in this order:

1. ``\\r\\n`` and ``\\r`` become ``\\n``; a leading BOM (U+FEFF) is dropped;
2. mojibake repair with ftfy (``cfg.fix_mojibake``). ftfy runs with every option that rewrites
   ordinary text switched off: no HTML unescaping, no quote uncurling, no ligature or full-width
   folding, no normalisation (step 3 does that), no line-break or control-character handling (steps 1
   and 4 do that). It is skipped unless a cheap regex sees a possible mojibake pair (see
   ``_mojibake_hint_re``): pure-ASCII and ordinary Chinese text never reach ftfy. Note that ftfy reads
   stray C1 controls as windows-1252 (``\\x93`` -> a curly quote, NEL ``\\x85`` -> an ellipsis). Then
   NEL, LS/PS (U+2028/U+2029), ``\\v`` and ``\\f`` become ``\\n``;
3. Unicode normal form ``cfg.unicode_form`` (NFC by default; '' keeps the text as is);
4. removal of invisible characters (``cfg.strip_control``): C0/C1 controls and DEL except tab and
   newline, ANSI terminal escapes, lone surrogates (ftfy, when on, has already turned them into U+FFFD),
   the soft hyphen, zero-width space, word joiner, BOM/ZWNBSP anywhere, bidi embeddings, overrides
   and isolates (U+202A-U+202E, U+2066-U+2069, a known spoofing vector), deprecated format
   characters (U+206A-U+206F) and interlinear annotation marks.
   Kept on purpose: ZWJ/ZWNJ between two visible characters (emoji sequences, Indic and Persian
   shaping; a ZWJ/ZWNJ next to whitespace or at either end is dropped), LRM/RLM/ALM (ordinary in
   right-to-left typesetting), variation selectors and tag characters (emoji and CJK variants, flag
   sequences), private-use characters (stand-ins for rare Han characters in OCR'd books) and U+FFFD;
5. whitespace: runs of spaces and Unicode space separators (NBSP, thin/em/en spaces, U+202F...) become
   one ASCII space. Tabs are kept (indentation, tables). The ideographic space U+3000 is kept as is,
   never collapsed: two of them are the paragraph indent of Chinese prose and they separate verse
   halves. Trailing whitespace (U+3000 included) is removed from every line, runs of blank lines are
   cut to ``cfg.max_blank_lines`` and the document is stripped (which also drops the indent of the
   first line).

``normalize_for_hash`` is the dedup key: NFKC, optional casefold, optional removal of every
punctuation and symbol character (Unicode categories P* and S*, which covers CJK and full-width
punctuation), removal of format/control characters, and whitespace collapsed to single spaces.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata

import ftfy
import ftfy.bad_codecs  # noqa: F401  (registers the sloppy-windows-* codecs used below)
from ftfy.chardata import CHARMAP_ENCODINGS

from pipelines.config import NormalizeConfig

__all__ = ["normalize_text", "normalize_for_hash"]

_FTFY_CONFIG = ftfy.TextFixerConfig(
    unescape_html=False,
    remove_terminal_escapes=True,
    fix_encoding=True,
    restore_byte_a0=True,
    replace_lossy_sequences=True,
    decode_inconsistent_utf8=True,
    fix_c1_controls=True,
    fix_latin_ligatures=False,
    fix_character_width=False,
    uncurl_quotes=False,
    fix_line_breaks=False,
    fix_surrogates=True,
    remove_control_chars=False,
    normalization=None,
    explain=False,
)


def _mojibake_hint_re() -> re.Pattern[str]:
    """Cheap test for text that ftfy might repair, so that clean non-ASCII text skips ftfy (~4 MB/s).

    UTF-8 decoded with one of the single-byte codepages ftfy knows turns every non-ASCII character into
    a lead-byte character (bytes 0xC2-0xF4) followed by continuation characters (0x80-0xBF) of that same
    codepage; without such a pair there is no mojibake. Per-codepage pairs matter: the union would fire
    on Chinese '——' and '……'. C1 controls and surrogates are hints too (ftfy maps/joins them).
    """
    singles = "[\\x80-\\x9f\\ud800-\\udfff]"
    leads: set[str] = set()
    branches = [singles]
    for encoding in CHARMAP_ENCODINGS:
        lead = set(bytes(range(0xC2, 0xF5)).decode(encoding, errors="replace"))
        cont = set(bytes(range(0x80, 0xC0)).decode(encoding, errors="replace")) | {"\ufffd"}
        leads |= lead
        branches.append(_char_class(lead) + _char_class(cont))
    # The leading lookahead gives the regex engine one character class to scan for (~100x faster).
    return re.compile(f"(?={singles}|{_char_class(leads)})(?:{'|'.join(branches)})")


def _char_class(chars: set[str]) -> str:
    return "[" + "".join(re.escape(c) for c in sorted(chars)) + "]"


_MOJIBAKE_HINT_RE = _mojibake_hint_re()
_CR_RE = re.compile(r"\r\n?")
_OTHER_BREAKS_RE = re.compile(r"[\x0b\x0c\x85\u2028\u2029]")
_ANSI_ESCAPE_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
_INVISIBLE_RE = re.compile(
    "["
    "\x00-\x08\x0b-\x1f\x7f-\x9f"  # C0 (tab and newline excepted), DEL, C1
    "\u00ad"  # soft hyphen
    "\u200b\u2060\ufeff"  # zero-width space, word joiner, BOM / zero-width no-break space
    "\u202a-\u202e\u2066-\u2069"  # bidi embeddings, overrides and isolates
    "\u206a-\u206f"  # deprecated format characters
    "\ufff9-\ufffb"  # interlinear annotation
    "\ud800-\udfff"  # lone surrogates (cannot be encoded as UTF-8)
    "]+"
)
# A joiner is kept only between two visible characters.
_STRAY_JOINER_RE = re.compile(r"(?<!\S)[\u200c\u200d]+|[\u200c\u200d]+(?!\S)")
# Horizontal whitespace that collapses to one space: tab and U+3000 are deliberately absent.
_SPACE_RUN_RE = re.compile("[ \u00a0\u1680\u2000-\u200a\u202f\u205f]+")
_TRAILING_SPACE_RE = re.compile("[ \t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+$", re.MULTILINE)


@functools.cache
def _blank_lines_re(max_blank_lines: int) -> tuple[re.Pattern[str], str]:
    keep = max(0, max_blank_lines) + 1
    return re.compile(f"\n{{{keep + 1},}}"), "\n" * keep


def normalize_text(text: str, cfg: NormalizeConfig) -> str:
    """Repair, normalise and tidy one document's text (see the module docstring for the rules)."""
    if not text:
        return ""
    if "\r" in text:
        text = _CR_RE.sub("\n", text)
    if text[0] == "\ufeff":
        text = text.lstrip("\ufeff")
    if not text.isascii():
        if cfg.fix_mojibake and _MOJIBAKE_HINT_RE.search(text):
            text = ftfy.fix_text(text, _FTFY_CONFIG).lstrip("\ufeff")
        text = _OTHER_BREAKS_RE.sub("\n", text)
    elif "\x0b" in text or "\x0c" in text:
        text = _OTHER_BREAKS_RE.sub("\n", text)
    if cfg.unicode_form:
        text = unicodedata.normalize(cfg.unicode_form, text)  # type: ignore[arg-type]  # validated at load
    if cfg.strip_control:
        if "\x1b" in text:
            text = _ANSI_ESCAPE_RE.sub("", text)
        text = _INVISIBLE_RE.sub("", text)
        if "\u200c" in text or "\u200d" in text:
            text = _STRAY_JOINER_RE.sub("", text)
    text = _SPACE_RUN_RE.sub(" ", text)
    text = _TRAILING_SPACE_RE.sub("", text)
    blank_re, blank_repl = _blank_lines_re(cfg.max_blank_lines)
    text = blank_re.sub(blank_repl, text)
    return text.strip()


@functools.cache
def _hash_drop_table(strip_punct: bool) -> tuple[dict[int, None], bytes]:
    """Code points removed from the dedup key (as a str.translate table, and its ASCII part as bytes).

    Always: control, format and surrogate characters that are not whitespace (Cc, Cf, Cs); with
    ``strip_punct`` also every punctuation and symbol character (P*, S*). Built once per process (~0.3 s).
    """
    table: dict[int, None] = {}
    for cp in range(sys.maxunicode + 1):
        ch = chr(cp)
        cat = unicodedata.category(ch)
        if (cat in ("Cc", "Cf", "Cs") or (strip_punct and cat[0] in "PS")) and not ch.isspace():
            table[cp] = None
    return table, bytes(cp for cp in table if cp < 128)


def normalize_for_hash(text: str, lowercase: bool = True, strip_punct: bool = True) -> str:
    """Canonical text for exact-duplicate hashing: NFKC, casefold, no punctuation/symbols, single spaces."""
    text = unicodedata.normalize("NFKC", text)
    if lowercase:
        text = text.casefold()
    table, ascii_drop = _hash_drop_table(strip_punct)
    if text.isascii():
        text = text.encode("ascii").translate(None, ascii_drop).decode("ascii")
    else:
        text = text.translate(table)
    return " ".join(text.split())
