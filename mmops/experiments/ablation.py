"""Ablation: each single modality and each fusion, trained and evaluated on the same splits."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mmops.atomic import atomic_write_json, atomic_write_text
from mmops.catalog import Catalog
from mmops.config import Params
from mmops.flatten import flatten

Variant = tuple[str, dict]


def default_variants(params: Params, fusions: list[str] | None = None) -> list[Variant]:
    """One model per single modality, then the configured modalities fused by each fusion
    (default: every registered fusion, with its default options)."""
    from mmops.models.components import FUSIONS

    singles = [(m, {"modalities": [m]}) for m in params.model.modalities]
    if len(params.model.modalities) < 2:
        return singles
    fused = "+".join(params.model.modalities)
    variants = []
    for name in fusions or FUSIONS.names():
        spec = params.model.fusion if name == params.model.fusion.name else params.model.fusion.model_copy(
            update={"name": name, "options": {}}
        )
        variants.append((f"{fused} ({name})", {"fusion": spec}))
    return singles + variants


def ablate(
    params: Params, paths: Catalog, out_dir: Path, variants: list[Variant] | None = None, log_to_mlflow: bool = True
) -> dict[str, dict]:
    """Train each variant on the already-featurized `paths.features` (model and metrics in a folder of
    its own under `out_dir`); write `ablation.{json,md}` and, unless disabled, log one MLflow run per
    variant (nested under an `ablation` run) plus the table."""
    from mmops import stages

    out_dir = Path(out_dir)
    results: dict[str, dict] = {}
    for name, model_update in variants or default_variants(params):
        folder = out_dir / _slug(name)
        variant = params.model_copy(update={"model": params.model.model_copy(update=model_update)})
        variant_paths = replace(paths, model=folder / "model", metrics=folder / "metrics")
        stages.train(variant, variant_paths)
        results[name] = stages.evaluate(variant, variant_paths)
    table = render_table(results)
    atomic_write_json(out_dir / "ablation.json", results)
    atomic_write_text(out_dir / "ablation.md", table)
    if log_to_mlflow:
        log_ablation(params, results, table)
    return results


def log_ablation(params: Params, results: dict[str, dict], table: str) -> str:
    """One parent run `ablation` with a child run per variant; returns the parent run id."""
    from mmops.registry.tracking import setup_mlflow

    mlflow = setup_mlflow(params.registry.experiment)
    with mlflow.start_run(run_name="ablation") as parent:
        mlflow.set_tag("mmops.kind", "ablation")
        mlflow.log_text(table, "ablation.md")
        for name, metrics in results.items():
            with mlflow.start_run(run_name=name, nested=True):
                mlflow.set_tag("mmops.kind", "ablation-variant")
                numbers = {k: float(v) for k, v in flatten(metrics).items() if isinstance(v, (int, float))}
                mlflow.log_metrics(numbers)
    return parent.info.run_id


def best_single_and_fused(results: dict[str, dict], metric: str = "macro_f1") -> tuple[str, str]:
    """Names of the best single-modality variant and the best fused one."""
    singles = {k: v for k, v in results.items() if "+" not in k}
    fused = {k: v for k, v in results.items() if "+" in k}
    return max(singles, key=lambda k: singles[k][metric]), max(fused, key=lambda k: fused[k][metric])


def render_table(results: dict[str, dict]) -> str:
    """Markdown: in-domain and shifted scores per variant, and the fused-vs-single margin."""
    shifted = any("shifted" in m for m in results.values())
    head = "| model | test accuracy | test macro-F1 |" + (" shifted accuracy | shifted macro-F1 |" if shifted else "")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for name, m in results.items():
        row = f"| {name} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} |"
        if shifted:
            s = m.get("shifted", {})
            row += f" {s.get('accuracy', float('nan')):.3f} | {s.get('macro_f1', float('nan')):.3f} |"
        lines.append(row)
    if any("+" in k for k in results) and any("+" not in k for k in results):
        single, fused = best_single_and_fused(results)
        margin = results[fused]["macro_f1"] - results[single]["macro_f1"]
        lines += ["", f"Best fusion `{fused}` vs best single modality `{single}`: macro-F1 {margin:+.3f}."]
    return "\n".join(lines) + "\n"


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-").replace("--", "-")
