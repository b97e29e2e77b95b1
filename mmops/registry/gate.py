"""The promotion gate: absolute floors, no regression against the champion, validated data."""

from __future__ import annotations

from pydantic import BaseModel

from mmops.config import GateConfig


class RuleResult(BaseModel):
    rule: str
    value: float | bool | None
    threshold: float | bool | None
    passed: bool
    detail: str = ""


class GateDecision(BaseModel):
    promote: bool
    rules: list[RuleResult]
    champion_version: str | None = None

    def summary(self) -> str:
        verdict = "PROMOTE" if self.promote else "REJECT"
        failed = [r.rule for r in self.rules if not r.passed]
        return verdict + (f" (failed: {', '.join(failed)})" if failed else " (all rules passed)")


def decide(
    candidate: dict,
    champion: dict | None,
    validation_passed: bool,
    gate: GateConfig,
    champion_version: str | None = None,
) -> GateDecision:
    """Every rule must hold for promotion; with no champion the floors alone decide."""
    rules = [
        RuleResult(rule="data_validation", value=validation_passed, threshold=True, passed=validation_passed),
        _floor("min_accuracy", candidate["accuracy"], gate.min_accuracy),
        _floor("min_macro_f1", candidate["macro_f1"], gate.min_macro_f1),
    ]
    if champion is not None:
        metric = gate.compare_metric
        delta = candidate[metric] - champion[metric]
        rules.append(
            RuleResult(
                rule="max_regression",
                value=round(delta, 6),
                threshold=-gate.max_regression,
                passed=delta >= -gate.max_regression,
                detail=f"{metric}: challenger {candidate[metric]:.4f} vs champion v{champion_version} "
                f"{champion[metric]:.4f} on the same test split",
            )
        )
    return GateDecision(promote=all(r.passed for r in rules), rules=rules, champion_version=champion_version)


def _floor(rule: str, value: float, threshold: float) -> RuleResult:
    return RuleResult(rule=rule, value=round(value, 6), threshold=threshold, passed=value >= threshold)


def render_markdown(decision: GateDecision, model_name: str, version: str) -> str:
    lines = [
        f"# Gate decision for {model_name} v{version}: {decision.summary()}",
        "",
        "| rule | value | threshold | verdict | detail |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in decision.rules:
        lines.append(f"| {r.rule} | {r.value} | {r.threshold} | {'pass' if r.passed else 'FAIL'} | {r.detail} |")
    return "\n".join(lines) + "\n"
