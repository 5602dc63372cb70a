"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint is a directory ``<out>/checkpoints/step-0000100/`` holding

* ``model.safetensors`` -- the weights, keys without ``_orig_mod.`` (torch.compile) or ``module.``
  (DDP) prefixes; the tied embedding / output head is stored once as ``embed_tokens.weight``;
* ``state.safetensors`` -- optimizer tensors (``optim.<index>.<name>``) and RNG states
  (``rng.torch``, ``rng.cuda.<device>``);
* ``state.json`` -- step, model and training configs, optimizer hyper-parameters and the
  parameter names in optimizer order, reader state, Python and NumPy RNG states, metrics.

Each checkpoint is written into a temporary sibling directory and renamed into place, then the
``latest`` file (holding the directory name) is replaced atomically, so a crash never leaves a
half-written checkpoint behind ``latest``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

FORMAT = "corpusforge-checkpoint/1"
WRAPPER_PREFIXES = ("_orig_mod.", "module.")
IMPLEMENTATION_FLAGS = ("fused", "foreach", "capturable", "differentiable")


def strip_prefixes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove torch.compile / DDP wrapper prefixes (in any nesting) from parameter names."""
    out = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        out[key] = value
    return out


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module under DDP (``.module``) and torch.compile (``._orig_mod``) wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod  # type: ignore[assignment]
        elif isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def _cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu").contiguous()


def save_weights(
    model: torch.nn.Module, path: str | os.PathLike, metadata: Mapping[str, str] | None = None
) -> None:
    tensors = {k: _cpu(v) for k, v in strip_prefixes(unwrap(model).state_dict()).items()}
    save_file(tensors, str(path), metadata={"format": "pt", **(metadata or {})})


def load_weights(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """Load ``model.safetensors`` (or a checkpoint directory) into ``model``, strictly."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    tensors = strip_prefixes(load_file(str(path)))
    unwrap(model).load_state_dict(tensors, strict=True)


# --------------------------------------------------------------------------------------------- RNG


def capture_rng() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Python, NumPy, torch CPU and CUDA generator states as (JSON part, tensor part)."""
    version, state, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    np_json = {
        "bit_generator": np_state["bit_generator"],
        "key": np_state["state"]["key"].tolist(),
        "pos": int(np_state["state"]["pos"]),
        "has_gauss": int(np_state["has_gauss"]),
        "gauss": float(np_state["gauss"]),
    }
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    return {"python": [version, list(state), gauss], "numpy": np_json}, tensors


def restore_rng(state: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> None:
    version, values, gauss = state["python"]
    random.setstate((version, tuple(values), gauss))
    n = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": n["bit_generator"],
            "state": {"key": np.asarray(n["key"], dtype=np.uint32), "pos": n["pos"]},
            "has_gauss": n["has_gauss"],
            "gauss": n["gauss"],
        }
    )
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# --------------------------------------------------------------------------------------- optimizer


def _optimizer_parts(
    optimizer: torch.optim.Optimizer, names: list[str]
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{key}"] = _cpu(value)
            else:
                scalars[f"{idx}.{key}"] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return {"param_groups": groups, "param_names": names, "scalars": scalars}, tensors


def _optimizer_state(meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for key, value in meta.get("scalars", {}).items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def optimizer_param_names(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """Names of the optimizer's parameters in its own order (the keys of its state dict)."""
    by_id = {id(p): n for n, p in strip_prefixes(dict(unwrap(model).named_parameters())).items()}
    return [by_id[id(p)] for g in optimizer.param_groups for p in g["params"]]


# ---------------------------------------------------------------------------------- save and load


def save_checkpoint(
    out_dir: str | os.PathLike,
    step: int,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    state: Mapping[str, Any] | None = None,
    keep: int = 0,
) -> Path:
    """Write checkpoint ``step`` under ``out_dir/checkpoints`` and point ``latest`` at it.

    ``state`` is extra JSON (configs, reader state, metrics). ``keep`` > 0 then keeps this checkpoint and
    the newest ``keep - 1`` others (by step).
    """
    root = Path(out_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:07d}"
    final, tmp = root / name, root / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()

    rng_json, tensors = capture_rng()
    doc: dict[str, Any] = {"format": FORMAT, "step": int(step), "rng": rng_json, **(state or {})}
    if optimizer is not None:
        doc["optimizer"], opt_tensors = _optimizer_parts(optimizer, optimizer_param_names(model, optimizer))
        tensors.update(opt_tensors)
    save_weights(model, tmp / "model.safetensors", metadata={"step": str(step)})
    save_file(tensors, str(tmp / "state.safetensors"))
    (tmp / "state.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    pointer = root / f".latest.tmp-{os.getpid()}"
    pointer.write_text(name + "\n", encoding="utf-8")
    os.replace(pointer, root / "latest")
    if keep > 0:  # the newest ``keep`` by step, and never the checkpoint just written
        others = sorted(p for p in root.glob("step-*") if p.is_dir() and p != final)
        for old in others[: max(0, len(others) - (keep - 1))]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """The checkpoint directory ``latest`` points at, or None when there is none."""
    root = Path(out_dir) / "checkpoints"
    pointer = root / "latest"
    if not pointer.is_file():
        return None
    path = root / pointer.read_text(encoding="utf-8").strip()
    if not (path / "state.json").is_file():
        raise FileNotFoundError(f"{pointer} points at {path}, which is not a complete checkpoint")
    return path


def read_state(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON part of checkpoint ``path``."""
    doc = json.loads((Path(path) / "state.json").read_text(encoding="utf-8"))
    if doc.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} checkpoint")
    return doc


def load_checkpoint(
    path: str | os.PathLike,
    *,
    model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    restore_rng_state: bool = True,
) -> dict[str, Any]:
    """Restore what is given (weights, optimizer, RNG) from checkpoint ``path``; return its JSON."""
    path = Path(path)
    doc = read_state(path)
    tensors = load_file(str(path / "state.safetensors"))
    if model is not None:
        load_weights(model, path / "model.safetensors")
    if optimizer is not None:
        meta = doc.get("optimizer")
        if meta is None:
            raise KeyError(f"{path}: checkpoint holds no optimizer state")
        if model is not None and meta["param_names"] != optimizer_param_names(model, optimizer):
            raise ValueError(f"{path}: optimizer parameters differ from the model's (different model?)")
        saved = _optimizer_state(meta, tensors)
        if len(saved["param_groups"]) != len(optimizer.param_groups):
            raise ValueError(
                f"{path}: optimizer has {len(optimizer.param_groups)} parameter groups, checkpoint has {len(saved['param_groups'])}"
            )
        for group, current in zip(saved["param_groups"], optimizer.param_groups, strict=True):
            # The implementation flags belong to this process's device, not the saved one.
            group.update({k: current[k] for k in IMPLEMENTATION_FLAGS if k in current})
        optimizer.load_state_dict(saved)
    if restore_rng_state:
        restore_rng(doc["rng"], tensors)
    return doc
