"""A stage launcher for tests: runs ``python -m training.train`` / ``training.run_eval`` commands in this
process (no interpreter start-up, no torch import per command), then reads the result file."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any


def inprocess_launch(cmd: list[str], result_file: Path) -> dict[str, Any]:
    i = cmd.index("-m")
    module = importlib.import_module(cmd[i + 1])
    code = module.main(cmd[i + 2 :])
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {code}")
    return json.loads(Path(result_file).read_text(encoding="utf-8"))
