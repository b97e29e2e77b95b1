"""`dvc plots show` renders each plot once: no file is declared both at the top level and in a stage."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _names(entries) -> list[str]:
    return [e if isinstance(e, str) else next(iter(e)) for e in entries or []]


def test_every_plot_is_declared_once():
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    declared = _names(spec.get("plots"))
    for stage in spec["stages"].values():
        declared += _names(stage.get("plots"))
    twice = [name for name, n in Counter(declared).items() if n > 1]
    assert not twice, f"declared more than once (rendered twice by `dvc plots show`): {twice}"
    assert any(name.endswith(".png") for name in declared), "the evaluate stage's PNG plots are not declared"


def test_every_plot_file_is_an_output_of_a_stage():
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    outs = {name for stage in spec["stages"].values()
            for key in ("outs", "plots", "metrics") for name in _names(stage.get(key))}
    missing = [name for name in _names(spec["plots"]) if name not in outs]
    assert not missing, f"top-level plots that no stage writes: {missing}"
