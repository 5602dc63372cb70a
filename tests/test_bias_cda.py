"""Counterfactual gender swap and CDA selection (pipelines/bias/cda.py)."""

from __future__ import annotations

import pytest

from pipelines.bias.cda import counterfactual_id, gender_swap, select_for_cda


@pytest.mark.parametrize(
    ("text", "swapped"),
    [
        ("He gave his book to her.", "She gave her book to him."),
        ("The book is his.", "The book is hers."),
        ("I met her.", "I met him."),
        ("I gave her a book.", "I gave him a book."),
        ("Her own mother called her yesterday.", "His own father called him yesterday."),
        ("his and hers", "hers and his"),
        ("The king and his sons", "The queen and her daughters"),
        ("She's here; he'll come.", "He's here; she'll come."),
        ("Mr. Smith thanked the waitress.", "Ms. Smith thanked the waiter."),
        ("He told her he loved her.", "She told him she loved him."),
        ("I told her I was sorry.", "I told him I was sorry."),
        ("We showed her they were wrong.", "We showed him they were wrong."),
    ],
)
def test_swaps(text, swapped):
    assert gender_swap(text) == swapped


@pytest.mark.parametrize(
    "text",
    [
        "He gave his book to her.",
        "She told him that her brother was a policeman.",
        "The women and the men met their uncles and nieces.",
        "My father and my mother are here, and he said so himself.",
        "The book is his, and the pen is hers.",
        "HE SAID HIS NAME TO HER.",
    ],
)
def test_swapping_twice_returns_the_original(text):
    once = gender_swap(text)
    assert once != text
    assert gender_swap(once) == text


def test_capitalisation_is_kept():
    assert gender_swap("he He HE") == "she She SHE"
    assert gender_swap("HIS CAR. HER.") == "HER CAR. HIM."
    assert gender_swap("Women") == "Men"


def test_only_whole_listed_words_change():
    text = "The manager, a human, met Hermann and Sheila in Manchester."
    assert gender_swap(text) == text


def test_names_inside_capitalised_runs_are_left_alone():
    assert gender_swap("Martin Luther King spoke.") == "Martin Luther King spoke."
    assert gender_swap("They ate at Burger King.") == "They ate at Burger King."
    assert gender_swap("Then King Henry spoke to the King of France.") == (
        "Then Queen Henry spoke to the Queen of France."
    )
    assert gender_swap("King Henry left.") == "Queen Henry left."


def test_one_way_pairs():
    assert gender_swap("the lord") == "the lady"
    assert gender_swap("the lady") == "the gentleman"
    assert gender_swap("Mrs Jones") == "Mr Jones"


def test_chinese_text_is_untouched():
    assert gender_swap("他和她是朋友。") == "他和她是朋友。"


def test_select_for_cda_is_deterministic_and_near_the_fraction():
    ids = [f"doc-{i}" for i in range(4000)]
    picked = [select_for_cda(i, 0.25, seed=7) for i in ids]
    assert picked == [select_for_cda(i, 0.25, seed=7) for i in ids]
    assert abs(sum(picked) / len(ids) - 0.25) < 0.03
    other_seed = [select_for_cda(i, 0.25, seed=8) for i in ids]
    assert other_seed != picked
    assert not any(select_for_cda(i, 0.0, seed=7) for i in ids[:100])
    assert all(select_for_cda(i, 1.0, seed=7) for i in ids[:100])
    assert counterfactual_id("abc") == "abc#cda"
