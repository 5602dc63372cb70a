"""Cleaning rules as data: the rule list from config, user plug-ins named in config, the engine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines import clean, ingest, storage
from pipelines.cleaning.engine import BUILTIN_RULES, CleaningEngine, clean_document
from pipelines.config import CLEAN_RULES, ConfigError, load_config
from pipelines.stage import StageJob
from tests.plugins import quality_model

REPO = Path(__file__).resolve().parents[1]
SCORER = "tests.plugins.quality_model:Scorer"
DROP_LINES = "tests.plugins.lines:DropLines"

GOOD_TRAIN = [
    "The committee met on Tuesday to review the budget for the new library and the school.",
    "She walked along the river in the morning and watched the boats sail past the old bridge.",
    "Researchers measured the temperature of the lake every week during the long winter.",
    "The museum reopened after two years of repairs, and children may now visit for free.",
    "He wrote a letter to his sister describing the village, the market and the harvest.",
    "The report explains how the city plans to improve its buses and repair the roads.",
    "Farmers in the valley grow wheat and barley, and they sell the grain at the market.",
    "The teacher asked the students to read the chapter and write a short summary of it.",
]
JUNK_TRAIN = [
    "Click here to win a free prize now! Best casino bonus, cheap deals, buy now, limited offer!",
    "Free money free money click now win big casino jackpot bonus offer buy cheap pills today!",
    "Buy cheap watches now! Huge discount, free shipping, click here, best offer, act now!",
    "Win win win! Casino bonus jackpot, click the link, free spins, cheap deal, subscribe now!",
    "Limited offer: buy now and get a free bonus! Click here for cheap loans and free money!",
    "Hot deals! Cheap pills, free trial, click here, buy now, discount prize, win a jackpot!",
    "Subscribe now for free spins and casino bonus! Click, win, buy cheap, best deal online!",
    "Act now: free gift card, click here, cheap offer, win prize money, bonus jackpot, buy!",
]
GOOD_DOCS = [
    "The library opened a new reading room this spring. Visitors can borrow books about the history "
    "of the valley, and the staff will help them find old maps of the river and the village.",
    "During the winter the lake froze for six weeks. The researchers walked across the ice every "
    "morning to measure its thickness and to write down the temperature of the water below.",
    "The city council approved a plan to repair the old bridge. Work will begin in the summer, and "
    "the buses will take a longer road around the market while the bridge is closed.",
    "My grandmother grew wheat and barley on a small farm. Every autumn she sold the grain at the "
    "market in town and wrote a letter to her sister about the harvest and the weather.",
]
JUNK_DOCS = [
    "Click here now! Free casino bonus, win the jackpot, cheap pills, buy now, best deal, limited "
    "offer, free money, subscribe today and win a prize!",
    "Cheap loans! Free spins! Click the link and buy now, huge discount, bonus jackpot, act now, win "
    "free money, best offer online today!",
    "Win a free gift card now! Click here, cheap watches, free shipping, casino bonus, buy now, hot "
    "deals, subscribe and win!",
]


def _train(tmp_path: Path) -> str:
    path = str(tmp_path / "quality.npz")
    quality_model.train(GOOD_TRAIN + JUNK_TRAIN, [1] * len(GOOD_TRAIN) + [0] * len(JUNK_TRAIN), path)
    return path


def _clean_section(weights: str) -> dict:
    """The plug-in after language identification; the tiny documents need relaxed built-in rules."""
    return {
        "rules": ["normalize", "langid", "quality_model", *CLEAN_RULES[2:]],
        "plugins": {"quality_model": {"class": SCORER, "settings": {"weights": weights, "threshold": 0.5}}},
        "langid": {"languages": [], "thresholds": {"en": 0.0, "zh": 0.0}, "default_threshold": 0.0},
        "gopher_quality": {"min_words": 5},
    }


def _write_corpus(root: Path) -> None:
    root.mkdir(parents=True)
    with open(root / "docs.jsonl", "w", encoding="utf-8") as fh:
        for i, text in enumerate(GOOD_DOCS + JUNK_DOCS):
            fh.write(json.dumps({"text": text, "n": i}) + "\n")


def _doc(text: str, i: int = 0) -> dict:
    return {"id": f"d{i}", "text": text, "source": "t.jsonl", "offset": i, "signals": None, "tags": []}


# ---------------------------------------------------------------------------------------------------
# config


def test_default_rules_are_todays_order() -> None:
    cfg = load_config()
    assert cfg.clean.rules == list(CLEAN_RULES) == list(BUILTIN_RULES)
    assert CLEAN_RULES == (
        "normalize",
        "langid",
        "gopher_repetition",
        "gopher_quality",
        "c4",
        "fineweb",
        "pii",
    )
    assert cfg.clean.plugins == {}


@pytest.mark.parametrize(
    ("clean", "message"),
    [
        ({"rules": ["normalize", "nope"]}, r"clean\.rules: unknown rule 'nope'.*clean\.plugins\.nope"),
        ({"rules": ["normalize", "pii", "pii"]}, r"clean\.rules: 'pii' is listed twice"),
        (
            {"plugins": {"q": {"class": "no_such_module_xyz:Scorer"}}},
            r"clean\.plugins\.q\.class: cannot import module 'no_such_module_xyz'",
        ),
        (
            {"plugins": {"q": {"class": "tests.plugins.quality_model:Nope"}}},
            r"clean\.plugins\.q\.class: module 'tests.plugins.quality_model' has no attribute 'Nope'",
        ),
        (
            {"plugins": {"q": {"class": "tests.plugins.quality_model"}}},
            r"not of the form 'package\.module:Class'",
        ),
        (
            {"plugins": {"q": {"class": "tests.plugins.lines:NoApply"}}},
            r"clean\.plugins\.q\.class: .* no apply",
        ),
        (
            {"plugins": {"q": {"class": SCORER, "settings": {"weight": "x"}}}},
            r"clean\.plugins\.q\.settings: tests\.plugins\.quality_model:Scorer does not accept",
        ),
        (
            {"plugins": {"q": {"class": SCORER, "setting": {}}}},
            r"clean\.plugins\.q: unknown key\(s\) \['setting'\]",
        ),
        ({"plugins": {"c4": {"class": DROP_LINES}}}, r"clean\.plugins\.c4: 'c4' is a built-in rule"),
        ({"plugins": {"q": "tests.plugins.lines:DropLines"}}, r"clean\.plugins\.q: expected a mapping"),
    ],
)
def test_bad_rule_config_fails_at_load_naming_the_key(clean: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(overrides={"clean": clean})


def test_a_declared_plugin_runs_only_where_rules_list_it() -> None:
    plugins = {"drop_ads": {"class": DROP_LINES, "settings": {"marker": "Advertisement"}}}
    text = "First line of the page.\nAdvertisement: buy things.\nLast line of the page."
    cfg = load_config(overrides={"clean": {"rules": ["normalize"], "plugins": plugins}}).clean
    assert clean_document(_doc(text), cfg).document["text"] == text
    cfg = load_config(overrides={"clean": {"rules": ["normalize", "drop_ads"], "plugins": plugins}}).clean
    out = clean_document(_doc(text), cfg).document
    assert out["text"] == "First line of the page.\nLast line of the page."
    assert out["signals"] == {"drop_lines.removed": 1.0}


# ---------------------------------------------------------------------------------------------------
# engine


def test_engine_and_rules_are_pure() -> None:
    """The rule engine pulls in neither Beam, Dagster, Arrow nor the storage layer."""
    probe = (
        "import sys, pipelines.cleaning.engine, pipelines.cleaning.plugins, pipelines.text.analysis\n"
        "bad = ('apache_beam', 'dagster', 'pyarrow', 'pipelines.storage', 'pipelines.beam_stage')\n"
        "print(sorted(m for m in sys.modules if m.startswith(bad)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_rules_come_from_config_order_and_membership() -> None:
    text = "Write to me at someone@example.com about the river, the bridge and the old mill today."
    no_pii = load_config(overrides={"clean": {"rules": ["normalize", "fineweb"]}}).clean
    out = clean_document(_doc(text), no_pii).document
    assert "someone@example.com" in out["text"] and not any(k.startswith("pii.") for k in out["signals"])
    assert [name for name, _ in CleaningEngine(no_pii).rules] == ["normalize", "fineweb"]
    with_pii = load_config(overrides={"clean": {"rules": ["normalize", "pii"]}}).clean
    assert clean_document(_doc(text), with_pii).document["text"].count("<EMAIL>") == 1


def test_a_line_rule_that_leaves_no_text_removes_the_document_unless_annotating() -> None:
    plugins = {"drop_all": {"class": DROP_LINES, "settings": {"marker": "x"}}}
    section = {"rules": ["normalize", "drop_all", "pii"], "plugins": plugins}
    cfg = load_config(overrides={"clean": section}).clean
    outcome = clean_document(_doc("x one\nx two"), cfg)
    assert (outcome.document, outcome.reason, outcome.detail) == (
        None,
        "drop_all:empty",
        "no text left after drop_all",
    )
    cfg = load_config(overrides={"clean": {**section, "annotate_only": True}}).clean
    assert clean_document(_doc("x one\nx two"), cfg).document["text"] == "x one\nx two"


def test_one_text_analysis_per_document_text(monkeypatch) -> None:
    """Gopher repetition, Gopher quality and FineWeb share one tokenisation of an unchanged text."""
    import pipelines.text.analysis as analysis

    calls = []
    original = analysis.tokenize_words
    monkeypatch.setattr(
        analysis, "tokenize_words", lambda text, cjk: calls.append(text) or original(text, cjk)
    )
    text = " ".join(GOOD_DOCS)
    cfg = load_config(overrides={"clean": {"gopher_quality": {"min_words": 5}}}).clean
    outcome = clean_document(_doc(text), cfg)  # no language model: every other rule runs
    assert outcome.document is not None and outcome.document["text"] == text
    assert calls == [text]


def test_annotate_only_flags_plugin_removals(tmp_path) -> None:
    section = {**_clean_section(_train(tmp_path)), "annotate_only": True}
    cfg = load_config(overrides={"clean": section}).clean
    out = clean_document(_doc(JUNK_DOCS[0]), cfg).document
    assert out is not None and "flag:quality_model:low-score" in out["tags"]
    assert out["signals"]["quality_model.score"] < 0.5


def test_the_beam_worker_builds_its_rules_once(tmp_path) -> None:
    cfg = load_config(
        overrides={"clean": {**_clean_section(_train(tmp_path)), "rules": ["normalize", "quality_model"]}}
    )
    import pyarrow.parquet as pq

    from pipelines import schemas

    shard = tmp_path / "shard.parquet"
    docs = [_doc(text, i) for i, text in enumerate(GOOD_DOCS + JUNK_DOCS)]
    pq.write_table(schemas.to_table(docs, schemas.DOCUMENTS), shard)
    work = clean.CleanWork(cfg.clean)
    before = quality_model.Scorer.built
    work.setup()
    kinds = [kind for _ in range(2) for kind, _ in work.rows(str(shard), {})]
    assert quality_model.Scorer.built == before + 1
    assert kinds == (["documents"] * len(GOOD_DOCS) + ["ledger"] * len(JUNK_DOCS)) * 2


# ---------------------------------------------------------------------------------------------------
# the stage: Beam job and Dagster asset


def test_plugin_removals_reach_the_ledger_and_stage_stats(tmp_path, beam_options) -> None:
    _write_corpus(tmp_path / "input")
    overrides = {
        "paths": {"input": str(tmp_path / "input"), "data_dir": str(tmp_path / "data")},
        "clean": _clean_section(_train(tmp_path)),
    }
    cfg = load_config(overrides=overrides)
    ingest.run(StageJob(name="raw", upstream=(), cfg=cfg, options=beam_options))
    result = clean.run(StageJob(name="clean", upstream=("raw",), cfg=cfg, options=beam_options))

    stats = result.manifest["stats"]
    assert stats["removed_by_reason"] == {quality_model.REASON: len(JUNK_DOCS)}
    assert stats["documents_out"] == len(GOOD_DOCS)
    version = storage.current_version(cfg.paths.data_dir, "clean")
    ledger = list(storage.iter_stage_rows(version, "ledger"))
    assert sorted(r["sample"] for r in ledger) == sorted(JUNK_DOCS)  # samples hold whole short texts
    assert {(r["stage"], r["reason"]) for r in ledger} == {("clean", quality_model.REASON)}
    assert all(r["detail"].startswith("score 0.") for r in ledger)
    kept = list(storage.iter_stage_rows(version))
    assert all(d["signals"]["quality_model.score"] >= 0.5 for d in kept)
    assert result.manifest["config"]["clean"]["plugins"]["quality_model"]["class"] == SCORER


def test_dagster_clean_asset_reports_plugin_removals(tmp_path) -> None:
    import dagster as dg

    from assets.definitions import defs
    from assets.resources import BeamRunner, CorpusforgeSettings

    _write_corpus(tmp_path / "input")
    config_file = tmp_path / "corpusforge.yaml"
    config_file.write_text(yaml.safe_dump({"clean": _clean_section(_train(tmp_path))}), encoding="utf-8")
    result = dg.materialize(
        [defs.get_assets_def("raw"), defs.get_assets_def("clean")],
        resources={
            "settings": CorpusforgeSettings(
                config_file=str(config_file),
                input_path=str(tmp_path / "input"),
                data_dir=str(tmp_path / "data"),
            ),
            "beam": BeamRunner(direct_running_mode="in_memory", direct_num_workers=1),
        },
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    meta = result.asset_materializations_for_node("clean")[0].metadata
    assert quality_model.REASON in str(meta["removals_by_reason"].value)
    assert meta["removed"].value == len(JUNK_DOCS)
