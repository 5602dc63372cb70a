from pathlib import Path

import pytest

from pipelines.config import ConfigError, describe, fingerprint, load_config, to_dict


def test_defaults_are_valid_and_documented():
    cfg = load_config()
    assert cfg.runner.runner == "FnApiRunner"
    assert cfg.clean.gopher_quality.min_words == 50
    rows = describe()
    assert all(doc for _, _, doc in rows), [k for k, _, d in rows if not d]


def test_file_then_overrides(tmp_path: Path):
    f = tmp_path / "cfg.yaml"
    f.write_text("dedup:\n  threshold: 0.8\nclean:\n  langid:\n    languages: [en]\n")
    cfg = load_config(f, {"dedup": {"num_perm": 64}})
    assert cfg.dedup.threshold == 0.8 and cfg.dedup.num_perm == 64
    assert cfg.clean.langid.languages == ["en"]
    assert cfg.clean.langid.default_threshold == 0.65  # untouched default


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"dedupe": {}}, "unknown config key(s) dedupe"),
        ({"clean": {"gopher_quality": {"min_wordz": 3}}}, "clean.gopher_quality.min_wordz"),
        ({"dedup": {"threshold": "high"}}, "dedup.threshold: expected a number"),
        ({"dedup": {"threshold": 1.5}}, "dedup.threshold must be within (0, 1)"),
        ({"runner": {"direct_running_mode": "fast"}}, "runner.direct_running_mode"),
        ({"clean": {"pii": {"kinds": ["ssn"]}}}, "clean.pii.kinds"),
        ({"raw": {"max_record_bytes": True}}, "raw.max_record_bytes: expected an integer"),
        ({"tokens": {"sequences_per_shard": 0}}, "tokens.sequences_per_shard must be >= 1"),
        ({"tokens": {"encode_batch": 0}}, "tokens.encode_batch must be >= 1"),
        ({"model": {"batch_size": 0}}, "model.batch_size must be >= 1"),
        ({"model": {"log_every": 0}}, "model.log_every must be >= 1"),
        ({"model": {"preset": "huge"}}, "model.preset must be one of tiny, small, 124m"),
        ({"model": {"precision": "fp8"}}, "model.precision must be auto, bf16 or fp32"),
        ({"model": {"objective": "t5"}}, "model.objective must be clm or mlm"),
        ({"output": {"compression": "zip"}}, "output.compression must be one of"),
        ({"runner": {"runner": "FlinkRuner"}}, "runner.runner 'FlinkRuner' is not a Beam runner"),
        ({"clean": {"langid": {"languages": ["english"]}}}, "are not ISO 639 codes"),
        ({"clean": {"langid": {"languages": ["eng", "zho"]}}}, "use ['en', 'zh'] instead of ['eng', 'zho']"),
        (
            {"clean": {"gopher_repetition": {"top_ngram_max_frac": {"two": 0.2}}}},
            "clean.gopher_repetition.top_ngram_max_frac: 'two'",
        ),
        ({"clean": {"fineweb": {"max_short_line_frac": 1.5}}}, "clean.fineweb.max_short_line_frac"),
        ({"tokenizer": {"sample_bytes": 0}}, "tokenizer.sample_bytes must be at least 1024"),
        ({"raw": {"glob": ""}}, "raw.glob must not be empty"),
        ({"dedup": {"fp_weight": 0.0, "fn_weight": 0.0}}, "dedup.fp_weight and dedup.fn_weight"),
        ({"model": {"seq_len": 300}}, "model.seq_len=300 must be 0 or divide tokens.seq_len=1024"),
    ],
)
def test_bad_values_fail_fast_with_the_key(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=overrides)
    assert message in str(err.value)


def test_missing_or_broken_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("clean: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_fingerprint_is_stable_and_sensitive():
    a, b = load_config(), load_config(overrides={"dedup": {"threshold": 0.71}})
    assert fingerprint(a) == fingerprint(load_config())
    assert fingerprint(a) != fingerprint(b)
    assert to_dict(b)["dedup"]["threshold"] == 0.71


def test_fingerprints_change_with_the_code(tmp_path, monkeypatch):
    from pipelines import code_version as cv

    (tmp_path / "pipelines" / "data").mkdir(parents=True)
    (tmp_path / "training").mkdir()
    rule = tmp_path / "pipelines" / "rule.py"
    rule.write_text("THRESHOLD = 0.5\n")
    (tmp_path / "pipelines" / "data" / "words.tsv").write_text("a\tb\n")
    monkeypatch.setattr(cv, "_ROOT", tmp_path)
    cv.code_version.cache_clear()
    try:
        before = cv.code_version()
        fp_before = fingerprint("clean", {"x": 1})
        assert cv.code_version() == before
        rule.write_text("THRESHOLD = 0.6\n")
        cv.code_version.cache_clear()
        assert cv.code_version() != before
        assert fingerprint("clean", {"x": 1}) != fp_before
        (tmp_path / "pipelines" / "data" / "words.tsv").write_text("a\tc\n")  # bundled data counts too
        changed = cv.code_version()
        cv.code_version.cache_clear()
        assert cv.code_version() != changed
    finally:
        cv.code_version.cache_clear()


def test_runner_class_paths_and_presets_are_accepted():
    from pipelines.config import MODEL_PRESETS
    from training.model import PRESETS

    cfg = load_config(overrides={"runner": {"runner": "my_org.runners.CustomRunner"}})
    assert cfg.runner.runner == "my_org.runners.CustomRunner"
    assert tuple(PRESETS) == MODEL_PRESETS  # the torch-free copy of the preset names is current
    assert load_config(overrides={"model": {"preset": "124m"}}).model.preset == "124m"


def test_mapping_settings_override_entry_by_entry():
    cfg = load_config(
        overrides={
            "clean": {
                "langid": {"thresholds": {"en": 0.8}},
                "gopher_repetition": {"top_ngram_max_frac": {2: 0.25}},
            }
        }
    )
    assert cfg.clean.langid.thresholds == {"en": 0.8, "zh": 0.5}  # zh keeps its default
    assert cfg.clean.gopher_repetition.top_ngram_max_frac == {"2": 0.25, "3": 0.18, "4": 0.16}
