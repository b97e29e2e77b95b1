"""The promotion gate: rules from `params.yaml` `gate:` evaluated on flattened `metrics.json` keys.

Rules, each one `RuleResult` (value, threshold, verdict):
- `data_validation`: the run's data validation passed;
- `same_test_data`: the challenger's metrics come from the data both models are re-scored on;
- `floor.<key>` / `ceiling.<key>`: absolute bounds on any metric (latency ceilings included);
- `regression.<key>` / `relative_regression.<key>`: the largest allowed drop against the champion,
  both models scored on the same frozen test split. With no champion the other rules decide.

MLflow's `MetricThreshold` is not used: its change thresholds demand an *improvement*
(`min_absolute_change` must be > 0), not a bounded regression, and `validate_evaluation_results`
reports one joined exception rather than a verdict per rule, which the decision record needs.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel

from mmops.catalog import METRICS_JSON
from mmops.config import MODALITIES, GateConfig, RegressionLimit
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
) -> GateDecision:
    """Every rule must hold for promotion; with no champion the floors and ceilings alone decide.

    `candidate` is the challenger's metrics.json (floors, ceilings); `challenger_scores` its scores
    on the same rows as `champion` (regression; defaults to `candidate`).
    """
    rules = [RuleResult(rule="data_validation", value=validation_passed, threshold=True, passed=validation_passed)]
    if same_data is not None:
        rules.append(same_data)
    rules += bound_rules(candidate, gate)
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
