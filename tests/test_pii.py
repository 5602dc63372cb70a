"""redact_pii: e-mail, IP, payment card and phone rules, their priorities and false-positive guards."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipelines.config import PiiConfig
from pipelines.text.pii import luhn_valid, plausible_card_number, redact_pii

CFG = PiiConfig()


def red(text: str, **overrides: object) -> str:
    return redact_pii(text, replace(CFG, **overrides) if overrides else CFG)[0]


def counts(text: str) -> dict[str, int]:
    return {k: v for k, v in redact_pii(text, CFG)[1].items() if v}


# --- e-mail ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail me at john.doe+news@mail.example.co.uk today", "mail me at <EMAIL> today"),
        ("联系我：zhang.san@example.com。", "联系我：<EMAIL>。"),
        ("邮箱zhang_san@example.cn谢谢", "邮箱<EMAIL>谢谢"),
        ("Write to a@b.io.", "Write to <EMAIL>."),
        ("(x-y@sub.domain.org)", "(<EMAIL>)"),
    ],
)
def test_emails_redacted(text: str, expected: str) -> None:
    assert red(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "ping foo@bar now",  # no TLD
        "npm install left-pad@1.3.0",  # numeric "TLD"
        "icon@2x.png and logo@3x.jpg",  # retina image names
        "@handle and user@ alone",
        ".dot@example.com starts with a dot",
        "trailing.@example.com ends with a dot",
    ],
)
def test_non_emails_kept(text: str) -> None:
    assert red(text) == text


def test_email_local_part_longer_than_64_is_not_matched() -> None:
    text = "x" * 70 + "@example.com"
    assert red(text) == text


# --- IP addresses ----------------------------------------------------------------------------------


def test_ipv4_redacted() -> None:
    assert red("host at 23.45.67.89, backup 93.184.216.34.") == "host at <IP_ADDRESS>, backup <IP_ADDRESS>."
    # all-single-digit quads read as section numbers; the few such public addresses are well-known
    # resolvers (8.8.8.8, 1.1.1.1), not personal data
    assert red("DNS at 8.8.8.8, backup 1.1.1.1.") == "DNS at 8.8.8.8, backup 1.1.1.1."
    assert red("服务器地址：203.208.60.1，端口80") == "服务器地址：<IP_ADDRESS>，端口80"


@pytest.mark.parametrize(
    "text",
    [
        "octet 8.8.8.256 is invalid",
        "version 1.2.3.4.5 released",
        "v10.2.3.4.1-beta",
        "section 4.1.2 and 2.3",
        "leading zeros 08.08.08.08",
    ],
)
def test_ipv4_lookalikes_kept(text: str) -> None:
    assert red(text) == text


def test_private_ips_kept_unless_configured() -> None:
    text = "localhost 127.0.0.1, lan 192.168.1.10, docs 192.0.2.7, v6 ::1 and 2001:db8::1"
    assert red(text) == text
    assert red(text, ip_public_only=False) == (
        "localhost <IP_ADDRESS>, lan <IP_ADDRESS>, docs <IP_ADDRESS>, v6 ::1 and <IP_ADDRESS>"
    )


def test_ipv6_redacted() -> None:
    assert red("resolver 2001:4860:4860::8888 ok") == "resolver <IP_ADDRESS> ok"
    assert red("full 2606:4700:4700:0:0:0:0:1111.") == "full <IP_ADDRESS>."
    assert red("mapped ::ffff:8.8.4.4 here") == "mapped <IP_ADDRESS> here"


@pytest.mark.parametrize(
    "text", ["at 12:30:45 sharp", "mac 00:1A:2B:3C:4D:5E", "slice a[1::2]", "std::vector<int>", "ratio 3:4:5"]
)
def test_ipv6_lookalikes_kept(text: str) -> None:
    assert red(text, ip_public_only=False) == text


# --- payment cards ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    [
        "4111111111111111",  # Visa
        "4111 1111 1111 1111",
        "5555-5555-5555-4444",  # Mastercard
        "3782 822463 10005",  # Amex 4-6-5
        "6011111111111117",  # Discover
        "3530111333300000",  # JCB
        "4222222222222",  # Visa, 13 digits
        "6222021234567890128",  # UnionPay, 19 digits
    ],
)
def test_valid_cards_redacted(number: str) -> None:
    assert red(f"card {number} ok") == "card <CREDIT_CARD> ok"
    assert red(f"卡号：{number}。") == "卡号：<CREDIT_CARD>。"


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    assert luhn_valid("79927398713")  # the textbook example
    assert not luhn_valid("79927398710")


def test_issuer_prefix_and_length() -> None:
    assert luhn_valid("9000000000000001") and not plausible_card_number("9000000000000001")
    assert luhn_valid("1234567890123452") and not plausible_card_number("1234567890123452")
    assert not plausible_card_number("378282246310005" + "0")  # Amex is 15 digits
    assert plausible_card_number("378282246310005")


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112 failed",  # bad Luhn
        "card 4111-1111-1111-1112",  # bad Luhn, dashes: not a phone either
        "id 9000000000000001",  # Luhn ok, no issuer starts with 9
        "ISBN 978-7-5063-2345-3",
        "ISBN 9787506323453",
        "mixed 4111-1111 1111-1111",  # separators must agree
        "too long 4111 1111 1111 1111 2025",
        "order 1234567890123452",
    ],
)
def test_card_lookalikes_kept(text: str) -> None:
    assert red(text) == text


# --- phones ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call (555) 123-4567 now", "call <PHONE> now"),
        ("call 555-123-4567 now", "call <PHONE> now"),
        ("call 555.123.4567", "call <PHONE>"),
        ("toll free 1-800-555-1234", "toll free <PHONE>"),
        ("open (555) 123-4567 24 hours", "open <PHONE> 24 hours"),
        ("London +44 20 7946 0958.", "London <PHONE>."),
        ("UK +44 (0)20 7946 0958", "UK <PHONE>"),
        ("US +1 415-555-2671", "US <PHONE>"),
        ("电话13812345678，谢谢", "电话<PHONE>，谢谢"),
        ("手机：138 1234 5678。", "手机：<PHONE>。"),
        ("手机：138-1234-5678", "手机：<PHONE>"),
        ("请拨+86 138 1234 5678联系", "请拨<PHONE>联系"),
        ("请拨+8613812345678", "请拨<PHONE>"),
        ("国际0086 13912345678", "国际<PHONE>"),
        ("北京办公室010-62345678转8", "北京办公室<PHONE>转8"),
    ],
)
def test_phones_redacted(text: str, expected: str) -> None:
    assert red(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "in 1999 and 2024",
        "date 2023-10-12 and 12/10/2023",
        "昨天是2023年10月12日",
        "plain 1234567890 and 20231012",
        "a 12-digit 123456789012 run",
        "12812345678 is not a mobile prefix",  # 12x is not a Chinese mobile prefix
        "138123456789 has twelve digits",
        "一共15000000000元",  # quantity, not a line
        "score +1000000",
        "ISBN 0-306-40615-2",
        "range 555-1234",
        "mixed 555-123.4567",
    ],
)
def test_phone_lookalikes_kept(text: str) -> None:
    assert red(text) == text


# --- priorities, counts, config --------------------------------------------------------------------


def test_email_wins_over_phone_in_local_part() -> None:
    out, n = redact_pii("QQ邮箱13812345678@139.com", CFG)
    assert out == "QQ邮箱<EMAIL>"
    assert n["email"] == 1 and n["phone"] == 0


def test_ip_in_url_and_email_in_same_text() -> None:
    text = "see http://93.184.216.34/x or ops@example.org, tel +1 415 555 2671, card 4111 1111 1111 1111"
    out, n = redact_pii(text, CFG)
    assert out == "see http://<IP_ADDRESS>/x or <EMAIL>, tel <PHONE>, card <CREDIT_CARD>"
    assert n == {"email": 1, "ip": 1, "credit_card": 1, "phone": 1}


def test_counts_every_match() -> None:
    text = "a@x.com b@y.org 13812345678 13912345678 13712345678"
    assert counts(text) == {"email": 2, "phone": 3}


def test_counts_include_zero_for_enabled_kinds() -> None:
    assert redact_pii("nothing here 42", CFG)[1] == {"email": 0, "ip": 0, "credit_card": 0, "phone": 0}


def test_kinds_subset() -> None:
    text = "mail a@b.com or call 555-123-4567"
    out, n = redact_pii(text, replace(CFG, kinds=["phone"]))
    assert out == "mail a@b.com or call <PHONE>"
    assert n == {"phone": 1}


def test_placeholder_format() -> None:
    assert red("ip 23.45.67.89", placeholder_format="[{kind}]") == "ip [IP_ADDRESS]"


def test_disabled_returns_text_unchanged() -> None:
    text = "a@b.com 8.8.8.8"
    assert redact_pii(text, replace(CFG, enabled=False)) == (text, {})


def test_clean_chinese_text_untouched() -> None:
    text = "子曰：学而时习之，不亦说乎？第12章，共3000字。"
    assert red(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "应符合5.3.2.1的规定。",
        "表3.2.1.1所示",
        "see Section 2.1.1.4",
        "Firmware v1.2.0.3",
        "见12.34.56.78节",
        "version 10.20.30.40 is out",
        "第23.45.67.89条",
    ],
)
def test_section_and_version_numbers_are_not_ip_addresses(text):
    assert redact_pii(text, PiiConfig())[0] == text


def test_full_width_pii_in_chinese_text_is_redacted_in_place():
    cfg = PiiConfig()
    assert redact_pii("联系电话：１３８１２３４５６７８。", cfg)[0] == "联系电话：<PHONE>。"
    assert redact_pii("邮箱 zhangsan＠example.com 谢谢", cfg)[0] == "邮箱 <EMAIL> 谢谢"
    assert redact_pii("卡号４１１１１１１１１１１１１１１１", cfg)[0] == "卡号<CREDIT_CARD>"
    assert (
        redact_pii("服务器 23.45.67.89 和 ２３．４５．６７．８９", cfg)[0]
        == "服务器 <IP_ADDRESS> 和 <IP_ADDRESS>"
    )
