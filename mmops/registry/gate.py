"""The promotion gate: rules from `params.yaml` `gate:` evaluated on flattened `metrics.json` keys.

Rules, each one `RuleResult` (value, threshold, verdict):
- `data_validation`: the run's data validation passed;
- `same_test_data`: the challenger's metrics come from the data both models are re-scored on;
- `floor.<key>` / `ceiling.<key>`: absolute bounds on any metric (latency ceilings included);
- `regression.<key>` / `relative_regression.<key>`: the largest allowed drop against the champion,
  both models scored on the same frozen test split. With no champion the other rules decide.
- `cv.mean.<key>` / `cv.std.<key>` (`gate.cv`, off by default): bounds on the k-fold cross-validation
  report (`cv.json` in `paths.metrics`, written by `mmops cv`) of the same params and data.

MLflow's `MetricThreshold` is not used: its change thresholds demand an *improvement*
(`min_absolute_change` must be > 0), not a bounded regression, and `validate_evaluation_results`
reports one joined exception rather than a verdict per rule, which the decision record needs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel

from mmops.catalog import METRICS_JSON, split_file
from mmops.config import MODALITIES, CVGateRule, GateConfig, Params, RegressionLimit
from mmops.errors import UserError
from mmops.flatten import flatten

LOWER_IS_BETTER_SUFFIXES = ("_ms", "ece", "loss")


class UnknownMetricError(UserError, ValueError):
    """A gate rule names a metric key that the evaluation did not produce."""


class RuleResult(BaseModel):
    rule: str
    value: float | bool | str | None
    threshold: float | bool | str | None
    passed: bool
    detail: str = ""


class GateDecision(BaseModel):
    promote: bool
    rules: list[RuleResult]
    champion_version: str | None = None
    test_data_hash: str | None = None

    def summary(self) -> str:
        verdict = "PROMOTE" if self.promote else "REJECT"
        failed = self.failed()
        return verdict + (f" (failed: {', '.join(failed)})" if failed else " (all rules passed)")

    def failed(self) -> list[str]:
        return [r.rule for r in self.rules if not r.passed]


def higher_is_better(key: str, limit: RegressionLimit | None = None) -> bool:
    """Explicit in the limit, else inferred: latency (`*_ms`), `ece` and losses are lower-is-better."""
    if limit is not None and limit.higher_is_better is not None:
        return limit.higher_is_better
    return not key.split(".")[-1].endswith(LOWER_IS_BETTER_SUFFIXES)


def numeric(metrics: Mapping) -> dict[str, float]:
    """Flattened numeric metrics (`without_audio.macro_f1`, `latency.batch_1.p95_ms`, ...)."""
    return {
        k: float(v) for k, v in flatten(dict(metrics)).items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def _unknown(key: str, available: Mapping, source: str) -> str:
    return f"metric {key!r} is not in {source}; available keys: {', '.join(sorted(available))}"


def applicable(gate: GateConfig, modalities: list[str]) -> GateConfig:
    """The rules that apply to a model on `modalities`: a rule on `without_<m>.*` needs `m` and another
    modality (evaluate drops a modality only from a fused model), so a dataset without audio keeps
    the rest of the gate."""

    def applies(key: str) -> bool:
        dropped = key.split(".", 1)[0].removeprefix("without_")
        return dropped not in MODALITIES or (dropped in modalities and len(modalities) > 1)

    sections = ("floors", "ceilings", "regression")
    return gate.model_copy(update={s: {k: v for k, v in getattr(gate, s).items() if applies(k)} for s in sections})


def check_metric_keys(gate: GateConfig, metrics: Mapping) -> None:
    """Raise UnknownMetricError naming every gate key that `metrics` lacks, with the keys it has."""
    flat = numeric(metrics)
    missing = [k for k in [*gate.floors, *gate.ceilings, *gate.regression] if k not in flat]
    if missing:
        raise UnknownMetricError(
            f"gate rule(s) on unknown metric key(s) {missing}: not in {METRICS_JSON}; "
            f"available keys: {', '.join(sorted(flat))}"
        )


def bound_rules(metrics: Mapping, gate: GateConfig) -> list[RuleResult]:
    """`floor.<key>` (value >= floor) and `ceiling.<key>` (value <= ceiling) on the challenger's metrics."""
    flat = numeric(metrics)
    rules = []
    for kind, bounds, ok in (
        ("floor", gate.floors, lambda v, t: v >= t),
        ("ceiling", gate.ceilings, lambda v, t: v <= t),
    ):
        for key, threshold in bounds.items():
            if key not in flat:
                rules.append(RuleResult(rule=f"{kind}.{key}", value=None, threshold=threshold, passed=False,
                                        detail=_unknown(key, flat, METRICS_JSON)))
                continue
            value = flat[key]
            rules.append(RuleResult(rule=f"{kind}.{key}", value=round(value, 6), threshold=threshold,
                                    passed=ok(value, threshold)))
    return rules


def regression_rules(
    challenger: Mapping, champion: Mapping, gate: GateConfig, champion_version: str | None
) -> list[RuleResult]:
    """`regression.<key>` (absolute drop) and `relative_regression.<key>` against the champion."""
    ours, theirs = numeric(challenger), numeric(champion)
    rules = []
    for key, limit in gate.regression.items():
        if key not in ours or key not in theirs:
            source = "the challenger's scores" if key not in ours else "the champion's scores"
            rules.append(RuleResult(rule=f"regression.{key}", value=None, threshold=limit.max_drop, passed=False,
                                    detail=_unknown(key, ours if key not in ours else theirs, source)))
            continue
        sign = 1.0 if higher_is_better(key, limit) else -1.0
        drop = sign * (theirs[key] - ours[key])  # > 0: the challenger is worse
        base = f"{key}: challenger {ours[key]:.4f} vs champion v{champion_version} {theirs[key]:.4f}"
        if limit.max_drop is not None:
            rules.append(RuleResult(rule=f"regression.{key}", value=round(drop, 6), threshold=limit.max_drop,
                                    passed=drop <= limit.max_drop + 1e-12, detail=f"{base} (drop)"))
        if limit.max_relative_drop is not None:
            rel = _relative(drop, theirs[key])
            rules.append(RuleResult(rule=f"relative_regression.{key}", value=round(rel, 6),
                                    threshold=limit.max_relative_drop, passed=rel <= limit.max_relative_drop + 1e-12,
                                    detail=f"{base} (drop / |champion|)"))
    return rules


def _relative(drop: float, baseline: float) -> float:
    if baseline == 0:
        return 0.0 if drop <= 0 else float("inf")
    return drop / abs(baseline)


CV_JSON = "cv.json"  # `mmops cv`'s summary, in paths.metrics beside metrics.json
# the params a model's quality depends on: train.recipe.FINGERPRINT_SECTIONS (not imported: no torch here)
CV_SECTIONS = ("seed", "classes", "features", "model", "train")


def training_identity(params: Params, features_dir: Path) -> str:
    """sha256 of the (resolved) params sections training reads and of the train and val splits' index
    files (which hold every shard's sha256): a CV report counts for a model only when both match."""
    dumped = params.dump()
    dumped["features"].pop("store", None)  # how the splits were sharded: their digests cover it
    digest = hashlib.sha256(json.dumps({k: dumped[k] for k in CV_SECTIONS}, sort_keys=True).encode())
    for split in ("train", "val"):
        index = split_file(features_dir, split) / "index.json"
        digest.update(index.read_bytes() if index.exists() else b"missing")
    return digest.hexdigest()


def read_cv_report(metrics_dir: Path) -> dict | None:
    path = Path(metrics_dir) / CV_JSON
    return json.loads(path.read_text()) if path.exists() else None


def cv_rules(rule: CVGateRule, report: Mapping | None, identity: str) -> list[RuleResult]:
    """`cv.mean.<metric>` (mean >= min_mean) and `cv.std.<metric>` (std <= max_std) from the CV report of
    this model's params and data; one failing `cv.<metric>` rule when there is no such report."""
    key = rule.metric
    if report is None or report.get("identity") != identity:
        why = "no cross-validation report" if report is None else "the cross-validation report is for other params or data"
        return [RuleResult(rule=f"cv.{key}", value=None, threshold=None, passed=False,
                           detail=f"{why} ({CV_JSON} in paths.metrics): run `mmops cv` with these params first")]
    stats = report["metrics"].get(key)
    if stats is None:
        return [RuleResult(rule=f"cv.{key}", value=None, threshold=None, passed=False,
                           detail=_unknown(key, report["metrics"], CV_JSON))]
    folds = f"{len(stats['folds'])} folds"
    rules = []
    if rule.min_mean is not None:
        rules.append(RuleResult(rule=f"cv.mean.{key}", value=round(stats["mean"], 6), threshold=rule.min_mean,
                                passed=stats["mean"] >= rule.min_mean, detail=f"mean over {folds}"))
    if rule.max_std is not None:
        rules.append(RuleResult(rule=f"cv.std.{key}", value=round(stats["std"], 6), threshold=rule.max_std,
                                passed=stats["std"] <= rule.max_std, detail=f"std over {folds} (ddof=1)"))
    return rules


def decide(
    candidate: Mapping,
    champion: Mapping | None,
    validation_passed: bool,
    gate: GateConfig,
    champion_version: str | None = None,
    *,
    challenger_scores: Mapping | None = None,
    same_data: RuleResult | None = None,
    test_data_hash: str | None = None,
    cv: Sequence[RuleResult] = (),
) -> GateDecision:
    """Every rule must hold for promotion; with no champion the floors and ceilings alone decide.

    `candidate` is the challenger's metrics.json (floors, ceilings); `challenger_scores` its scores
    on the same rows as `champion` (regression; defaults to `candidate`).
    """
    rules = [RuleResult(rule="data_validation", value=validation_passed, threshold=True, passed=validation_passed)]
    if same_data is not None:
        rules.append(same_data)
    rules += bound_rules(candidate, gate)
    rules += cv  # `cv_rules`, when `gate.cv` is on
    if champion is not None:
        rules += regression_rules(challenger_scores or candidate, champion, gate, champion_version)
    return GateDecision(
        promote=all(r.passed for r in rules), rules=rules, champion_version=champion_version,
        test_data_hash=test_data_hash,
    )


def same_test_data_rule(evaluated_on: str | None, scored_on: str) -> RuleResult:
    """The data the challenger's metrics.json was computed from equals the data both models are re-scored on."""
    return RuleResult(
        rule="same_test_data",
        value=scored_on[:16],
        threshold=(evaluated_on or "unknown")[:16],
        passed=evaluated_on == scored_on,
        detail="dataset hash now (value) vs the hash the challenger's features were built from (threshold)",
    )


def render_markdown(decision: GateDecision, model_name: str, version: str, extra: str = "") -> str:
    compared = f"champion v{decision.champion_version}" if decision.champion_version else "no champion yet"
    lines = [
        f"# Gate decision for {model_name} v{version}: {decision.summary()}",
        "",
        f"Compared against: {compared}. Test data hash: `{decision.test_data_hash or 'n/a'}`.",
        "",
        "| rule | value | threshold | verdict | detail |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in decision.rules:
        lines.append(f"| {r.rule} | {r.value} | {r.threshold} | {'pass' if r.passed else 'FAIL'} | {r.detail} |")
    return "\n".join(lines) + "\n" + (f"\n{extra}" if extra else "")
