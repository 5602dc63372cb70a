"""Identity of the code and bundled data that produce a stage, for version fingerprints.

A content hash of every file under ``pipelines/`` and ``training/`` (sources, lexicons, word lists),
so a fix to a rule gives new fingerprints and ``reuse_existing`` never returns output built by older
code. Computed once per process (about 1 MB of files).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

PACKAGE_DIRS = ("pipelines", "training")
_ROOT = Path(__file__).resolve().parents[1]


@lru_cache(maxsize=1)
def code_version() -> str:
    """16 hex digits of SHA-256 over (relative path, bytes) of every code and data file."""
    h = hashlib.sha256()
    for name in PACKAGE_DIRS:
        for path in sorted((_ROOT / name).rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts or path.suffix in {".pyc", ".md"}:
                continue
            h.update(path.relative_to(_ROOT).as_posix().encode() + b"\0")
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]
