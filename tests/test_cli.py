"""`corpusforge` command line: bad input fails fast with a message, before any Dagster run starts."""

from __future__ import annotations

from assets.cli import main


def test_missing_input_fails_fast_with_what_to_fix(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    code = main(["run", "--input", str(tmp_path / "missing"), "--data-dir", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert code == 2 and "does not exist" in err and "paths.input" in err
    assert not (tmp_path / "data").exists() and not (tmp_path / "home").exists()  # nothing started


def test_unknown_selection_lists_the_assets(tmp_path, capsys):
    code = main(["run", "--input", str(tmp_path), "--select", "raw_document"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown asset(s) ['raw_document']" in err and "raw" in err


def test_missing_config_file(tmp_path, capsys):
    assert main(["run", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_config_lists_every_key(capsys):
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "dedup.threshold = 0.51" in out and "filtered.doc_min_weighted = 2.0" in out


def test_report_of_a_missing_data_dir_says_so(tmp_path, capsys):
    assert main(["report", "--data-dir", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_run_is_quiet_by_default_and_logs_everything_to_a_file(tmp_path, capsys, monkeypatch, bad_corpus):
    root, _ = bad_corpus
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CORPUSFORGE_BEAM_MODE", "in_memory")
    config = tmp_path / "c.yaml"
    config.write_text("raw:\n  max_record_bytes: 4096\nclean:\n  gopher_quality:\n    min_words: 5\n")
    data = tmp_path / "data"
    args = ["run", "--config", str(config), "--input", str(root), "--data-dir", str(data), "--workers", "1"]
    assert main([*args, "--select", "raw,clean"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) <= 20, out
    assert any("raw: check conservation passed" in line for line in out)
    assert any(line.startswith("== clean:") and " in -> " in line for line in out)
    assert not any("DEBUG" in line or "sdk_worker" in line for line in out)
    logs = list((data / "logs").glob("run-*.log"))
    assert len(logs) == 1 and "STEP_SUCCESS" in logs[0].read_text()
