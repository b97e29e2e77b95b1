"""infra/commands.yaml for tests: render a command for a native run, or check a deployed one."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
COMMANDS: dict = yaml.safe_load((INFRA / "commands.yaml").read_text())
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def render(name: str, **values: str) -> list[str]:
    """The argv of command `name` with its {placeholders} filled in."""
    return [_PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), token) for token in COMMANDS[name]["argv"]]


def env(name: str) -> dict[str, str]:
    """Variables every deployment of command `name` must set, to exactly these values."""
    return dict(COMMANDS[name].get("env") or {})


def match(name: str, argv: list[str]) -> dict[str, str]:
    """The placeholder values that make `argv` equal to command `name`; AssertionError if none do."""
    template = COMMANDS[name]["argv"]
    argv = [str(a) for a in argv]
    where = f"\n  commands.yaml {name}: {template}\n  deployed:          {argv}"
    assert len(argv) == len(template), f"{name}: {len(argv)} arguments, commands.yaml has {len(template)}{where}"
    values: dict[str, str] = {}
    for expected, got in zip(template, argv):
        parts = _PLACEHOLDER.split(expected)  # literal, name, literal, name, ..., literal
        pattern = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>.+)" for i, p in enumerate(parts))
        found = re.fullmatch(pattern, got)
        assert found, f"{name}: {got!r} where commands.yaml has {expected!r}{where}"
        for key, value in found.groupdict().items():
            assert values.setdefault(key, value) == value, f"{name}: {{{key}}} is both {values[key]!r} and {value!r}"
    return values
