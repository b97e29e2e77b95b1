"""Read `params.yaml`: defaults, `--set key=value` overrides, validation, and the check that every
component the params name is registered (the only part that imports the models)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mmops.config import ComponentSpec, ConfigError, ModelConfig, Params


def load_params(
    path: str | Path | None = "params.yaml", overrides: list[str] | None = None, check_components: bool = True
) -> Params:
    """Read `params.yaml` (defaults if `path` is None), apply `key=value` overrides, validate.

    `check_components=False` skips importing the model registries (torch), for commands that
    never build a model (`mmops validate`).
    """
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"params file {p} does not exist")
        raw = yaml.safe_load(p.read_text()) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: top level must be a mapping of sections")
    for item in overrides or []:
        _apply_override(raw, item)
    try:
        params = Params.model_validate(_merge(Params().dump(), raw))
        if check_components:
            check_model_components(params.model)
            if params.distill.enabled:  # fail now, not after training the teacher
                from mmops.compress.distill import student_model_config

                check_model_components(student_model_config(params.model, params.distill.student),
                                       "distill.student (merged into model)")
        return params
    except ValidationError as err:
        lines = [
            f"  {'.'.join(str(x) for x in e['loc'])}: {e['msg']}"
            + (f" (got {e['input']!r})" if e["type"] != "missing" and not isinstance(e["input"], dict) else "")
            for e in err.errors()
        ]
        raise ConfigError(f"invalid params{f' in {path}' if path else ''}:\n" + "\n".join(lines)) from None


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {part} is not a section")
    node[parts[-1]] = yaml.safe_load(value)


def _merge(defaults: Any, given: Any) -> Any:
    """Deep-merge `given` onto `defaults`. A component whose `name` changes keeps none of the
    default component's options (they belong to the other class)."""
    if not isinstance(defaults, dict) or not isinstance(given, dict):
        return given
    if "name" in defaults and given.get("name", defaults["name"]) != defaults["name"]:
        return given
    return {**defaults, **{k: _merge(defaults.get(k), v) for k, v in given.items()}}


def check_model_components(cfg: ModelConfig, where: str = "model") -> None:
    """Every encoder and the fusion the config names exists and accepts its options (errors name
    `<where>.<component>...`)."""
    from mmops.models.components import ENCODERS, FUSIONS

    errors = []
    specs: list[tuple[str, ComponentSpec, Any]] = [(f"{where}.{m}", getattr(cfg, m), ENCODERS) for m in cfg.active()]
    specs.append((f"{where}.fusion", cfg.fusion, FUSIONS))
    for where, spec, registry in specs:
        try:
            registry.config_for(spec.name).model_validate(spec.options)
        except ValidationError as err:
            for e in err.errors():
                errors.append(f"  {where}.options.{'.'.join(str(x) for x in e['loc'])}: {e['msg']}")
        except ValueError as err:
            errors.append(f"  {where}.name: {err}")
    if errors:
        raise ConfigError("invalid params:\n" + "\n".join(errors))
