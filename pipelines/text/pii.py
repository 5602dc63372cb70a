"""PII redaction with validated regular expressions: e-mail addresses, IP addresses, payment cards, phones.

Each kind is found in one pass of a compiled regex over the original text (skipped by a cheap test,
e.g. no '@' means no e-mail), candidates are validated in Python, and overlaps are settled by priority:
e-mail, then IP, then card, then phone. A span already claimed by an earlier kind is never matched
again, so ``13812345678@139.com`` is one e-mail, not a phone. Card-like digit runs that fail the Luhn
or issuer check, and ISBNs, are *claimed but kept*: no phone may match inside or across them, only
around them (``+86 138 1234 5678`` is a phone although ``86 138 1234 5678`` is a failed card).

Rules (lookarounds are ASCII so that Chinese text around a match needs no spaces; full-width forms
such as ``１３８…`` or ``＠`` are matched through a same-length ASCII view of the text):

* e-mail: ``local@domain.tld``; the local part is letters, digits and ``._%+-`` (not starting or ending
  with a dot), the domain has at least one dot and an alphabetic TLD of 2-24 letters, so ``foo@bar`` and
  ``npm@1.2.3`` do not match; image names such as ``logo@2x.png`` (file-extension "TLDs") are skipped.
* IPv4: four dotted decimal octets 0-255 without leading zeros, not inside a longer dotted number
  (``1.2.3.4.5``, ``v1.2.3.4.5``), and not a section or version number: all four octets single
  digits (``5.3.2.1``; this also keeps well-known resolvers such as 1.1.1.1, which are not personal),
  right after an ASCII letter (``v1.2.0.3``) or a word such as version, build, section, clause,
  table, figure, §, 第, 表, 图, 见, or right before 节, 条, 款, 章, 项. IPv6: a hex/colon candidate validated by ``ipaddress`` (full and
  ``::``-compressed forms, optional trailing dotted IPv4); ``12:30:45`` and MAC addresses fail that
  check. With ``cfg.ip_public_only`` (default) only globally routable addresses are redacted: loopback,
  private, link-local and documentation ranges (127.0.0.1, 192.168.x.x, 2001:db8::) are kept.
* payment card: 13-19 digits, solid or in the printed groupings 4-4-4-4(-3), 4-4-4-1..4 and
  4-6-5/4-6-4 split by single spaces or single dashes (one kind per number), not touching other
  digits; valid Luhn checksum and a plausible issuer prefix with a length that issuer uses (Visa 4,
  Mastercard 51-55/2221-2720, Amex 34/37, Diners 30/36/38/39, JCB 3528-3589, Discover/UnionPay/Maestro
  6, Maestro 50/56-58, Mir 2200-2204). ISBN-13s start with 978/979 and so never qualify.
* phone, three shapes, none touching other digits (grouped shapes may follow or precede a space and
  another number; the international shape may not, since its own groups are space-separated):
  international ``+CC ...`` (``+`` then 8-15 digits in groups split by single spaces, dots or dashes,
  optionally one parenthesised group, e.g. ``+44 (0)20 7946 0958``);
  North American ``(555) 123-4567``, ``555-123-4567``, ``555.123.4567`` (area code 2-9xx; the two
  separators must agree, so dates such as ``2023-10-12`` and plain digit runs are not phones);
  Chinese mobile ``1[3-9]x xxxx xxxx`` with optional ``+86``/``0086`` prefix, written solid or grouped
  3-4-4 by spaces or dashes, and Chinese landlines ``0AA(A)-NNNNNNN(N)`` written with a dash.
  Bare 10-digit runs, years, dates, ``ISBN ...`` numbers and numbers whose last seven digits are one
  repeated digit (``15000000000``) are not phones.
"""

from __future__ import annotations

import ipaddress
import re
from bisect import bisect_left
from collections.abc import Iterator

from pipelines.config import PiiConfig

__all__ = ["redact_pii", "PLACEHOLDER_NAMES", "luhn_valid", "plausible_card_number"]

PLACEHOLDER_NAMES = {"email": "EMAIL", "phone": "PHONE", "ip": "IP_ADDRESS", "credit_card": "CREDIT_CARD"}
_ORDER = ("email", "ip", "credit_card", "phone")

# Every pattern starts with a consuming character class or literal, so that the regex engine can scan
# for that first character quickly; the "not preceded by" conditions are lookbehinds placed after it.

# E-mail: found from each '@' (str.find), local part matched backwards in a window, domain forwards.
_LOCAL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-")
_LOCAL_RE = re.compile(r"[A-Za-z0-9._%+\-]{1,64}$")  # searched with endpos at the '@'
_DOMAIN_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,24})(?![A-Za-z0-9\-]|\.[A-Za-z0-9])"
)
_FILE_EXTENSIONS = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "js", "css", "tif"})

# IPv4: a maximal run of digits and dots, validated in Python (so 1.2.3.4.5 is one run, and fails).
_IPV4_RUN_RE = re.compile(r"[0-9](?<![0-9.][0-9])[0-9]{0,2}(?:\.[0-9]{1,3}){3}[0-9.]*")
_IPV4_STRICT_RE = re.compile(
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}"
)
# IPv6: hex groups and colons (optionally ending in dotted IPv4), validated by ipaddress.
_IPV6_RE = re.compile(
    r"[0-9A-Fa-f:](?<![0-9A-Za-z:.][0-9A-Fa-f:])[0-9A-Fa-f]{0,3}:(?:[0-9A-Fa-f]{0,4}:){1,6}"
    r"(?:[0-9A-Fa-f]{1,4}|[0-9]{1,3}(?:\.[0-9]{1,3}){3})?(?![0-9A-Za-z:]|\.[0-9])"
)
_HEX_GROUP_RE = re.compile(r"[0-9A-Fa-f]+")

# Cards: 13-19 digits, solid or in printed groupings, not touching other digits or a '+'.
_CARD_RE = re.compile(
    r"[0-9](?<![0-9+][0-9])(?<![0-9][ \-][0-9])"
    r"(?:[0-9]{12,18}"  # solid
    r"|[0-9]{3}([ \-])(?:[0-9]{4}\1[0-9]{4}\1[0-9]{1,4}(?:\1[0-9]{1,3})?"  # 4-4-4-x(-x)
    r"|[0-9]{6}\1[0-9]{4,5}))"  # 4-6-5 (Amex), 4-6-4 (Diners)
    r"(?![ \-]?[0-9])"
)
_ISBN_RE = re.compile(r"(?:ISBN|isbn)(?:-1[03])?[:：]?\s*(?:[0-9][ \-]?){9,12}[0-9Xx]")

# Phones may not touch other digits; the grouped shapes may sit next to a space and a number
# ("(555) 123-4567 24 hours"), the international one may not (its groups are space-separated).
_INTL_END = r"(?![0-9]|[ .\-][0-9])"
_END = r"(?![0-9]|[.\-][0-9])"
_PHONE_RES = tuple(
    re.compile(p)
    for p in (
        # international: +CC, single-separated digit groups, one optional "(0)"-style group;
        # the digit count (8-15, E.164) is checked in Python
        r"\+(?<![0-9A-Za-z+]\+)[1-9][0-9]{0,2}(?:[ .\-]?\([0-9]{1,4}\))?(?:[ .\-]?[0-9]){6,14}" + _INTL_END,
        # North American, (NXX) XXX-XXXX
        r"\((?<![0-9A-Za-z+]\()[2-9][0-9]{2}\) ?[0-9]{3}[.\-][0-9]{4}" + _END,
        # North American, [1-]NXX-XXX-XXXX or NXX.XXX.XXXX, the same separator twice
        r"[1-9](?<![0-9A-Za-z+][1-9])(?<![0-9][.\-][1-9])"
        r"(?:(?<=1)[ .\-]?[2-9][0-9]{2}|(?<=[2-9])[0-9]{2})([.\-])[0-9]{3}\1[0-9]{4}" + _END,
        # Chinese mobile, optional 0086 (+86 is the international rule), solid or 3-4-4
        r"[01](?<![0-9A-Za-z+][01])(?<![0-9][.\-][01])"
        r"(?:(?<=0)086[ \-]?1|(?<=1))[3-9][0-9]([ \-]?)[0-9]{4}\1[0-9]{4}" + _END,
        # Chinese landline, area code and dash
        r"0(?<![0-9A-Za-z+]0)(?<![0-9][.\-]0)[1-9][0-9]{1,2}-[2-9][0-9]{6,7}" + _END,
    )
)
_DIGIT_RE = re.compile(r"[0-9]")


def luhn_valid(digits: str) -> bool:
    """Luhn (mod 10) checksum of a string of ASCII digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _issuer_lengths(digits: str) -> range | tuple[int, ...]:
    """Card lengths used by the issuer identified by the leading digits (empty when none)."""
    p2, p4 = int(digits[:2]), int(digits[:4])
    if digits[0] == "4":
        return (13, 16, 19)
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:
        return (16,)
    if p2 in (34, 37):
        return (15,)
    if 3528 <= p4 <= 3589:
        return range(16, 20)
    if p2 in (30, 36, 38, 39):
        return range(14, 20)
    if digits[0] == "6" or p2 in (50, 56, 57, 58):
        return range(13, 20)
    if 2200 <= p4 <= 2204:
        return range(16, 20)
    return ()


def plausible_card_number(digits: str) -> bool:
    """13-19 digits, a known issuer prefix with a length that issuer uses, and a valid Luhn checksum."""
    return 13 <= len(digits) <= 19 and len(digits) in _issuer_lengths(digits) and luhn_valid(digits)


Span = tuple[int, int, bool]  # start, end, redact (False: claimed but kept)


def _emails(text: str) -> Iterator[Span]:
    at = text.find("@")
    while at != -1:
        lo = max(0, at - 65)
        local = _LOCAL_RE.search(text, lo, at)  # leftmost start: the whole run of local-part characters
        if local is not None:
            start = local.start()
            dom = _DOMAIN_RE.match(text, at + 1)
            if (
                dom is not None
                and (start == 0 or text[start - 1] not in _LOCAL_CHARS)  # run not longer than 64
                and text[start] != "."
                and text[at - 1] != "."
                and dom.group(1).lower() not in _FILE_EXTENSIONS
            ):
                yield start, dom.end(), True
        at = text.find("@", at + 1)


def _ip_ok(text: str, public_only: bool) -> bool:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return False
    return addr.is_global or not public_only


_NUMBERING_BEFORE_RE = re.compile(
    r"(?:(?<![A-Za-z])(?:v|ver|version|build|release|rev|section|sec|clause|chapter|table|fig|figure|"
    r"step|item|no|§)\.?\s*|[第表图见节条款章]\s*)$",
    re.IGNORECASE,
)
_NUMBERING_AFTER = frozenset("节条款章项")


def _is_numbering(text: str, start: int, end: int, run: str) -> bool:
    """A dotted quad that is a section / version number rather than an address."""
    if all(len(octet) == 1 for octet in run.split(".")):
        return True
    before = text[max(0, start - 12) : start]
    if before[-1:].isascii() and before[-1:].isalpha():
        return True
    return _NUMBERING_BEFORE_RE.search(before) is not None or text[end : end + 1] in _NUMBERING_AFTER


# Every PII kind needs a digit or an '@': only then can the ASCII view add a match. Chinese text is
# full of full-width punctuation (，：？), so the view is built only for full-width digits or '＠'.
# One fast substring search per character beats a regex class over CJK text by ~8x.
_FULLWIDTH_TRIGGERS = tuple("０１２３４５６７８９＠")
_FULLWIDTH_TO_ASCII = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}


def _ips(text: str, public_only: bool) -> Iterator[Span]:
    if "::" in text or text.count(":") >= 7:  # IPv6 first: it may end in a dotted IPv4
        for m in _IPV6_RE.finditer(text):
            # at least three hex groups: keeps Python slices such as a[1::2] out
            if len(_HEX_GROUP_RE.findall(m.group())) >= 3 and _ip_ok(m.group(), public_only):
                yield m.start(), m.end(), True
    if "." in text:
        for m in _IPV4_RUN_RE.finditer(text):
            run = m.group().rstrip(".")  # a sentence-final dot is not part of the address
            end = m.start() + len(run)
            if (
                _IPV4_STRICT_RE.fullmatch(run)
                and not _is_numbering(text, m.start(), end, run)
                and _ip_ok(run, public_only)
            ):
                yield m.start(), end, True


def _cards(text: str) -> Iterator[Span]:
    if "ISBN" in text or "isbn" in text:
        for m in _ISBN_RE.finditer(text):
            yield m.start(), m.end(), False
    for m in _CARD_RE.finditer(text):
        yield m.start(), m.end(), plausible_card_number(m.group().replace(" ", "").replace("-", ""))


def _phones(text: str) -> Iterator[Span]:
    for rx in _PHONE_RES:
        if rx is _PHONE_RES[0] and "+" not in text:
            continue
        for m in rx.finditer(text):
            digits = "".join(_DIGIT_RE.findall(m.group()))
            if len(set(digits[-7:])) == 1:  # 15000000000, 555-000-0000: quantities and dummies
                continue
            if digits and m.group()[0] == "+" and not 8 <= len(digits) <= 15:
                continue
            yield m.start(), m.end(), True


class _Claims:
    """Disjoint spans claimed so far, sorted by start; ``kept`` ones (failed cards, ISBNs) are soft."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.kept: list[bool] = []

    def free(self, start: int, end: int) -> bool:
        """No overlap with a claimed span, except that a kept span may lie wholly inside [start, end)."""
        i = bisect_left(self.starts, end)  # spans starting before `end`
        while i > 0 and self.ends[i - 1] > start:
            i -= 1
            if not (self.kept[i] and start <= self.starts[i] and self.ends[i] <= end):
                return False
        return True

    def add(self, start: int, end: int, kept: bool) -> None:
        """Claim [start, end) (which ``free`` accepted), absorbing the kept spans it covers."""
        i = bisect_left(self.starts, start)
        while i < len(self.starts) and self.starts[i] < end:
            del self.starts[i], self.ends[i], self.kept[i]
        self.starts.insert(i, start)
        self.ends.insert(i, end)
        self.kept.insert(i, kept)


def redact_pii(text: str, cfg: PiiConfig) -> tuple[str, dict[str, int]]:
    """Replace PII with ``cfg.placeholder_format`` placeholders; counts per enabled kind (zeros included)."""
    if not cfg.enabled or not text:
        return text, {}
    counts = {k: 0 for k in _ORDER if k in cfg.kinds}
    original = text
    if any(c in text for c in _FULLWIDTH_TRIGGERS):  # same length: spans index the original text
        text = text.translate(_FULLWIDTH_TO_ASCII)
    has_digits = _DIGIT_RE.search(text) is not None
    claims = _Claims()
    hits: list[tuple[int, int, str]] = []
    for kind in counts:
        if kind == "email":
            if "@" not in text:
                continue
            spans = _emails(text)
        elif not has_digits:
            continue
        elif kind == "ip":
            spans = _ips(text, cfg.ip_public_only)
        elif kind == "credit_card":
            spans = _cards(text)
        else:
            spans = _phones(text)
        for start, end, redact in spans:
            if claims.free(start, end):
                claims.add(start, end, kept=not redact)
                if redact:
                    hits.append((start, end, kind))
                    counts[kind] += 1
    if not hits:
        return original, counts
    hits.sort()
    parts: list[str] = []
    pos = 0
    for start, end, kind in hits:
        parts.append(original[pos:start])
        parts.append(cfg.placeholder_format.format(kind=PLACEHOLDER_NAMES[kind]))
        pos = end
    parts.append(original[pos:])
    return "".join(parts), counts
