"""User rules named in config: ``clean.plugins.<name> = {class: "package.module:Class", settings: {...}}``.

The class is imported where the rules are built (each Beam worker's ``setup``) and constructed as
``Class(**settings)``; the result must have ``apply(doc, analysis) -> Decision`` (see
``pipelines.cleaning.rules``). ``rule_problems`` checks the config when it is loaded: every name in
``clean.rules`` is a built-in rule or a declared plug-in, and every plug-in's class imports, has
``apply`` and accepts its settings.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pipelines.config import CLEAN_RULES

if TYPE_CHECKING:
    from pipelines.config import CleanConfig

__all__ = ["PluginError", "load_object", "plugin_spec", "rule_problems"]

PLUGIN_KEYS = ("class", "settings")
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class PluginError(ValueError):
    """A plug-in class cannot be imported or does not fit the rule interface."""


def load_object(ref: str) -> Any:
    """Import ``package.module:Name`` (a dotted name after the colon reaches a nested attribute)."""
    module_name, sep, attr = ref.partition(":")
    if not (sep and module_name and attr):
        raise PluginError(f"{ref!r} is not of the form 'package.module:Class'")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or an error raised while the module runs
        raise PluginError(f"cannot import module {module_name!r} ({type(exc).__name__}: {exc})") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise PluginError(f"module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def plugin_spec(entry: Any) -> tuple[str, dict[str, Any]]:
    """``(class reference, settings)`` of one ``clean.plugins`` entry (already validated)."""
    return entry["class"], dict(entry.get("settings") or {})


def _plugin_problems(name: str, entry: Any) -> list[str]:
    key = f"clean.plugins.{name}"
    if name in CLEAN_RULES:
        return [f"{key}: {name!r} is a built-in rule; give the plug-in another name"]
    if not _NAME_RE.fullmatch(name):
        return [f"{key}: a rule name holds only letters, digits, '_', '.' and '-'"]
    if not isinstance(entry, Mapping):
        return [f"{key}: expected a mapping {{class: 'package.module:Class', settings: {{...}}}}"]
    unknown = sorted(set(entry) - set(PLUGIN_KEYS))
    if unknown:
        return [f"{key}: unknown key(s) {unknown}; valid keys: class, settings"]
    ref, settings = entry.get("class"), entry.get("settings") or {}
    if not isinstance(ref, str) or not ref:
        return [f"{key}.class: expected 'package.module:Class', got {ref!r}"]
    if not isinstance(settings, Mapping):
        return [f"{key}.settings: expected a mapping of the class's keyword arguments, got {settings!r}"]
    try:
        cls = load_object(ref)
    except PluginError as exc:
        return [f"{key}.class: {exc}; the module must be importable where the pipeline runs"]
    if not callable(getattr(cls, "apply", None)):
        return [f"{key}.class: {ref} has no apply(doc, analysis) method returning a Decision"]
    try:
        inspect.signature(cls).bind(**{str(k): v for k, v in settings.items()})
    except TypeError as exc:
        return [f"{key}.settings: {ref} does not accept these settings ({exc})"]
    except ValueError:  # no signature to inspect (a builtin): checked when the rule is built
        pass
    return []


def rule_problems(cfg: CleanConfig) -> list[str]:
    """What is wrong with ``clean.rules`` and ``clean.plugins`` (empty when nothing is)."""
    problems: list[str] = []
    for name, entry in cfg.plugins.items():
        problems += _plugin_problems(str(name), entry)
    seen: set[str] = set()
    for name in cfg.rules:
        if not isinstance(name, str) or (name not in CLEAN_RULES and name not in cfg.plugins):
            problems.append(
                f"clean.rules: unknown rule {name!r}; use a built-in rule ({', '.join(CLEAN_RULES)}) or "
                f"declare it under clean.plugins.{name} with a class"
            )
        elif name in seen:
            problems.append(f"clean.rules: {name!r} is listed twice; list each rule once")
        seen.add(str(name))
    return problems
