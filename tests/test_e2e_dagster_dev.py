"""End to end through the UI path: `dagster dev` + GraphQL launch of the full job on the sample corpus."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data" / "corpus"

# Small enough for 2 CPU cores: tiny tokenizer, short sequences, a few training steps.
E2E_CONFIG = {
    "tokenizer": {"vocab_size": 1024, "min_frequency": 2},
    "tokens": {"seq_len": 64, "val_fraction": 0.1, "sequences_per_shard": 256},
    "model": {
        "preset": "tiny",
        "max_steps": 12,
        "batch_size": 8,
        "eval_every": 6,
        "eval_batches": 4,
        "checkpoint_every": 6,
    },
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reset_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


@pytest.fixture
def dagster_dev(tmp_path):
    """`dagster dev` on 127.0.0.1 in its own session with default signal handlers; stopped by SIGINT."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    from assets.cli import INSTANCE_YAML

    (home / "dagster.yaml").write_text(INSTANCE_YAML)  # the file `make dev` installs
    config = tmp_path / "e2e.yaml"
    config.write_text(yaml.safe_dump(E2E_CONFIG))
    port = _free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "CORPUSFORGE_CONFIG": str(config),
        "CORPUSFORGE_INPUT": str(SAMPLE),
        "CORPUSFORGE_DATA_DIR": str(tmp_path / "data"),
        "CORPUSFORGE_BEAM_WORKERS": "2",
    }
    dagster = Path(sys.executable).with_name("dagster")
    log = open(tmp_path / "dagster_dev.log", "wb")  # noqa: SIM115 (outlives this block: closed in finally)
    proc = subprocess.Popen(
        [str(dagster), "dev", "-h", "127.0.0.1", "-p", str(port), "-w", str(REPO / "workspace.yaml")],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_reset_signals,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    "dagster dev exited early:\n" + (tmp_path / "dagster_dev.log").read_text()[-4000:]
                )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(1)
        else:
            raise TimeoutError("dagster dev did not answer within 120 s")
        yield {"port": port, "home": home, "data": tmp_path / "data", "log": tmp_path / "dagster_dev.log"}
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


@pytest.mark.slow
def test_full_job_through_graphql(dagster_dev, monkeypatch):
    import dagster as dg
    from dagster_graphql import DagsterGraphQLClient

    from assets.definitions import defs

    client = DagsterGraphQLClient("127.0.0.1", port_number=dagster_dev["port"])
    deadline = time.time() + 60
    while True:  # the code location may still be loading right after the server answers
        try:
            run_id = client.submit_job_execution(
                "corpusforge_full", repository_location_name="corpusforge", repository_name="__repository__"
            )
            break
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(2)
    deadline = time.time() + 900
    status = None
    while time.time() < deadline:
        status = client.get_run_status(run_id)
        if status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
            break
        time.sleep(3)
    assert status == dg.DagsterRunStatus.SUCCESS, dagster_dev["log"].read_text()[-6000:]

    monkeypatch.setenv("DAGSTER_HOME", str(dagster_dev["home"]))
    with dg.DagsterInstance.get() as instance:
        records = instance.all_logs(run_id)
    materialized = {
        r.dagster_event.asset_key.to_user_string()
        for r in records
        if r.dagster_event and r.dagster_event.event_type_value == "ASSET_MATERIALIZATION"
    }
    expected = {spec.key.to_user_string() for spec in defs.resolve_all_asset_specs()}
    assert materialized == expected
    checks = [
        r.dagster_event.event_specific_data
        for r in records
        if r.dagster_event and r.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    assert len(checks) == len(list(defs.resolve_asset_graph().asset_check_keys))
    assert all(c.passed for c in checks), [(c.asset_key, c.check_name) for c in checks if not c.passed]
