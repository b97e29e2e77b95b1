"""Ablation: train and evaluate each single modality and the fused model on the same splits."""

from __future__ import annotations

import json
from pathlib import Path

from mmops.config import Params

Variant = tuple[str, dict]


def default_variants(params: Params) -> list[Variant]:
    """One model per single modality, plus the configured fused model."""
    singles = [(m, {"modalities": [m]}) for m in params.model.modalities]
    return singles + [("+".join(params.model.modalities), {})] if len(params.model.modalities) > 1 else singles


def ablate(params: Params, out_dir: Path, variants: list[Variant] | None = None) -> dict[str, dict]:
    """Train each variant on the already-featurized splits; write `ablation.{json,md}`."""
    from mmops import stages

    out_dir = Path(out_dir)
    results: dict[str, dict] = {}
    for name, model_update in variants or default_variants(params):
        variant = params.model_copy(
            update={
                "model": params.model.model_copy(update=model_update),
                "paths": params.paths.model_copy(update={"model": out_dir / name / "model", "metrics": out_dir / name / "metrics"}),
            }
        )
        stages.train(variant)
        results[name] = stages.evaluate(variant)
    (out_dir / "ablation.json").write_text(json.dumps(results, indent=2))
    (out_dir / "ablation.md").write_text(render_table(results))
    return results


def render_table(results: dict[str, dict]) -> str:
    lines = ["| model | test accuracy | test macro-F1 |", "| --- | --- | --- |"]
    for name, m in results.items():
        lines.append(f"| {name} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} |")
    return "\n".join(lines) + "\n"
