"""Word lists and matchers of the bias stage (pipelines/bias/lexicon.py)."""

from __future__ import annotations

from importlib.resources import files

import pytest

from pipelines.bias import lexicon as L
from pipelines.bias.cda import swap_map


def flagged(text: str, lang: str = "en") -> list[str]:
    return [m.term for m in L.flagged_matcher(lang).find(text.lower())]


def identity(text: str, lang: str = "en") -> list[str]:
    return [m.term for m in L.identity_matcher(lang).find(text.lower())]


# --------------------------------------------------------------------------------------------------
# data files


def test_ldnoobw_files_ship_with_licence_and_sources():
    folder = files("pipelines").joinpath("data", "lexicons", "ldnoobw")
    sources = folder.joinpath("SOURCES.md").read_text(encoding="utf-8")
    assert "CC-BY-4.0" in sources and "5faf2ba42d7b" in sources
    assert "Attribution 4.0 International" in folder.joinpath("LICENSE").read_text(encoding="utf-8")
    assert len(L.ldnoobw_terms("en")) == 403
    # 319 lines, one duplicate (仆街)
    assert len(L.ldnoobw_terms("zh")) == 318
    assert L.ldnoobw_terms("xx-unknown") == ()


def test_every_categorised_term_is_in_its_list_and_weights_are_as_documented():
    for lang in L.FLAGGED_LANGS:
        cats = L.term_categories(lang)  # raises LexiconError for a term missing from ldnoobw/<lang>
        assert set(cats) == set(L.ldnoobw_terms(lang))
    en = L.term_categories("en")
    assert en["nigger"] == ("slur", 2.0)
    assert en["fuck"] == ("profanity", 1.0)
    assert en["sex"] == ("descriptive", 0.25)
    assert en["escort"] == ("disabled", 0.0)
    assert en["dildo"] == ("unspecified", 1.0)
    assert L.term_categories("zh")["性"] == ("disabled", 0.0)
    assert L.term_categories("ja")["女の子"][1] == 0.0


def test_normalize_lang():
    assert L.normalize_lang("zh-Hant") == "zh"
    assert L.normalize_lang("EN_us") == "en"
    assert L.normalize_lang(None) == ""
    assert L.matcher_langs("zh-cn") == ("zh", "en")
    assert L.matcher_langs(None) == ("en",)


def test_count_units_words_and_cjk_characters():
    assert L.count_units("Hello, world!  Again") == 3
    assert L.count_units("你好，世界。") == 4
    assert L.count_units("我爱 New York 城市。") == 6
    assert L.count_units("") == 0
    assert L.count_units("naïve café") == 2


def test_english_plurals():
    assert L.english_plurals("woman") == ["womans", "women"]
    assert L.english_plurals("lady") == ["ladies"]
    assert L.english_plurals("boy") == ["boys"]
    assert L.english_plurals("princess") == ["princesses"]
    assert "heroes" in L.english_plurals("hero")
    assert "germans" in L.english_plurals("german")


def test_trie_pattern_prefers_the_longest_entry():
    import re

    pattern = re.compile(L._trie_pattern(["ab", "abc", "abd", "b"]))
    assert pattern.findall("abc abd ab b") == ["abc", "abd", "ab", "b"]


# --------------------------------------------------------------------------------------------------
# flagged-term matching


@pytest.mark.parametrize(
    "text",
    [
        "Scunthorpe United",
        "a classic assessment of the assassin",
        "a cocktail in Essex",
        "the analysis of Sussex and Middlesex",
        "Hancock's title",
        "butter and scrap",
    ],
)
def test_scunthorpe_style_words_do_not_match(text):
    assert flagged(text) == []


def test_true_positives_english_case_insensitive_and_phrases():
    assert flagged("What the FUCK, you ass.") == ["fuck", "ass"]
    assert flagged("ass-backwards") == ["ass"]
    assert flagged("a piece of shit") == ["piece of shit"]  # the phrase wins over "shit"
    assert flagged("Fuck!Shit") == ["fuck", "shit"]


def test_allowlisted_spans_do_not_count():
    assert flagged("She graduated magna cum laude.") == []
    assert flagged("cum laude, then cum") == ["cum"]
    assert flagged("Moby Dick, by Melville") == []
    assert flagged("a blue tit and a great tit") == []
    assert flagged("tit") == ["tit"]


def test_disabled_entries_are_not_matched():
    assert flagged("a police escort for the XX century pegging") == []
    assert flagged("他的性格很好，喝牛奶，逼近城门，奸臣当道", "zh") == []


def test_chinese_substring_matching_longest_first():
    assert flagged("你他妈的是傻逼", "zh") == ["他妈的", "傻逼"]
    assert flagged("这是一部色情小说", "zh") == ["色情"]


def test_chinese_allowlist():
    assert flagged("这是他的处女作，她是处女座。", "zh") == []
    assert flagged("她还是处女", "zh") == ["处女"]
    assert flagged("今日你好吗？有朝一日你会明白", "zh") == []
    assert flagged("我妈妈的书，姨妈的病", "zh") == []
    assert flagged("这不干你事", "zh") == []


@pytest.mark.parametrize(
    "text",
    [
        "全国体操比赛",  # 操比
        "5月1日批准施行",  # 日批
        "我爸妈的房子",  # 妈的
        "老味道",
        "飞机八点起飞",
        "河北紧靠北京",
        "扇贝肉",
        "会议于13点开始",
        "肥西县",
        "水稻杂种优势",
        "阳光照射你的脸",
        "我妈比我高",
        "手册那一页",
    ],
)
def test_chinese_compounds_that_contain_a_listed_word_do_not_match(text):
    assert flagged(text, "zh") == []


@pytest.mark.parametrize(
    "text",
    ["And then, poof, the rabbit vanished.", "Our Maine Coon cat", "spic and span", "outside for a fag"],
)
def test_harmless_english_uses_never_weigh_as_slurs(text):
    from pipelines.bias.toxicity import score_document

    assert score_document(text, "en").weighted <= 1.0  # at most one profanity: never drops a line


def test_chinese_identity_words_inside_unrelated_words_do_not_count():
    assert identity("中华人民共和国成立于1949年。", "zh") == []
    assert identity("下课后他回教室拿书。", "zh") == ["他"]
    assert identity("首先生产一批样品，原先生活在农村。", "zh") == []


def test_english_terms_are_found_in_chinese_text_next_to_cjk_characters():
    assert flagged("我fuck你", "zh") == ["fuck"]
    assert flagged("他说fucking好", "zh") == ["fucking"]
    # ASCII entries stay whole words inside Chinese text
    assert flagged("classic经典", "zh") == []


# --------------------------------------------------------------------------------------------------
# identity matching


def test_identity_terms_plurals_and_phrases():
    hits = identity("Women, Muslims and Germans; black people and a black cat")
    assert hits == ["women", "muslims", "germans", "black people"]
    info = L.identity_matcher("en").info
    assert info["women"] == ("axis.gender", "noun.female")
    assert info["he"] == ("pronoun.male",)
    assert "hes" not in info  # pronouns get no plural


def test_identity_allowlist_and_chinese_other_he():
    assert identity("其他人和吉他手", "zh") == []
    assert identity("他和她们", "zh") == ["他", "她们"]
    assert identity("美国人口很多，美国人很多", "zh") == ["美国人"]
    assert identity("the Indian Ocean and an Indian village") == ["indian"]
    assert identity("我是LGBT群体的一员", "zh") == ["lgbt"]


def test_document_matcher_finds_both_kinds_including_contained_terms():
    scan = L.document_matcher("en").scan("no gay sex here, said the gay man".lower())
    assert [m.term for m in scan.flagged] == ["gay sex"]
    assert [m.term for m in scan.identity] == ["gay", "gay", "man"]
    assert scan.identity[0].start == 3
    zh = L.document_matcher("zh").scan("其他人说他妈的，他是中国人")
    assert [m.term for m in zh.flagged] == ["他妈的"]
    assert [m.term for m in zh.identity] == ["他", "中国人"]


def test_document_matcher_agrees_with_separate_matchers_on_sample_text():
    text = (
        "He said the women were right. What the fuck, she asked his Muslim friend.\n"
        "Magna cum laude! The gay men and a lesbian woman; Scunthorpe.\n"
    ).lower()
    scan = L.document_matcher("en").scan(text)
    assert scan.flagged == L.flagged_matcher("en").find(text)
    assert scan.identity == L.identity_matcher("en").find(text)


# --------------------------------------------------------------------------------------------------
# CDA pair list


def test_cda_pairs_are_consistent_and_cover_gendered_nouns():
    m2f, f2m = L.cda_pairs()
    assert m2f["lord"] == "lady" and f2m["lady"] == "gentleman"
    assert m2f["mr"] == "ms" and f2m["mrs"] == "mr" and f2m["ms"] == "mr"
    swaps = swap_map()
    for cls in ("noun.male", "noun.female"):
        missing = [w for w in L.gendered_terms("en")[cls] if w not in swaps]
        assert missing == [], f"{cls} nouns without a CDA partner: {missing}"
