"""Dagster ``Config`` classes generated from ``pipelines.config`` dataclasses.

The launchpad shows every threshold with its description and default, and there is still only one
place where a default is written down (``pipelines/config.py``). Every field is optional: a field left
empty keeps the value of the config file (or the embedded default), so run config only overrides
what it names.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, Optional

import dagster as dg
from pydantic import Field, create_model

from pipelines import config as pc


def _field_type(tp: Any, default: Any) -> Any:
    if tp is list or typing.get_origin(tp) is list:
        return list[str]
    if tp is dict or typing.get_origin(tp) is dict:
        if default:
            k, v = next(iter(default.items()))
            return dict[type(k), type(v)]  # type: ignore[misc]
        return dict[str, Any]
    return tp


def config_class(
    cls: type, name: str | None = None, extra: dict[str, tuple[Any, Any]] | None = None
) -> type[dg.Config]:
    """A ``dg.Config`` subclass mirroring dataclass ``cls`` (nested dataclasses become nested Configs)."""
    hints = typing.get_type_hints(cls)
    inst = cls()
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            sub = config_class(tp)
            fields[f.name] = (sub, Field(default_factory=sub))
        else:
            default = getattr(inst, f.name)
            doc = f"{f.metadata.get('doc', '')} Empty = config file (default {json.dumps(pc.to_dict(default))})."
            fields[f.name] = (Optional[_field_type(tp, default)], Field(default=None, description=doc))  # noqa: UP045
    for key, (tp, fld) in (extra or {}).items():
        fields[key] = (tp, fld)
    model = create_model(name or f"{cls.__name__}Asset", __base__=dg.Config, **fields)
    model.__doc__ = (cls.__doc__ or "").strip() or None
    return model


def reuse_field() -> tuple[Any, Any]:
    """The ``reuse_existing`` field every stage's form has."""
    return (
        bool,
        Field(
            default=False,
            description="Re-use a committed output with the same config and input instead of recomputing.",
        ),
    )


def _set_values(cfg: dg.Config) -> dict[str, Any]:
    """Fields of ``cfg`` that were given a value (None = left empty), recursing into nested sections."""
    out: dict[str, Any] = {}
    for name in type(cfg).model_fields:
        value = getattr(cfg, name)
        if isinstance(value, dg.Config):
            if nested := _set_values(value):
                out[name] = nested
        elif value is not None:
            out[name] = value.model_dump() if hasattr(value, "model_dump") else value
    return out


def section_values(cfg: dg.Config) -> tuple[dict[str, Any], bool]:
    """(section overrides: only the fields the run config set, reuse flag) from an asset's config."""
    values = _set_values(cfg)
    reuse = bool(values.pop("reuse_existing", False))
    return values, reuse
