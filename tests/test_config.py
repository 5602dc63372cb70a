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
        ({"ingest": {"max_record_bytes": True}}, "ingest.max_record_bytes: expected an integer"),
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
