"""Model cards: the Markdown MLflow shows as each version's and the registered model's Description.

A card is built from what the registry already holds, so it can be written again at any time:
a version's tags (gate verdicts `gate.<rule>` = `pass value=… threshold=…`, `lineage.*`, the
variant comparisons `quantize.*` / `onnx.*`, its classes and modalities) and the `test_*` metrics
of the run that logged it. `version_card` / `model_card` render (pure); `write_cards` and
`write_model_card` read the registry and set the descriptions. The registered model's card names
the current champion; `compare_and_set` (the one path every alias move takes) rewrites it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping

CLASSES_TAG = "mmops.classes"  # JSON list of the version's classes, as its signature's outputs name them
MODALITIES_TAG = "mmops.modalities"  # comma-separated: the inputs the version uses
MAX_CLASSES_TAG_CHARS = 5000  # model-version tag values are VARCHAR(5000) in MLflow's SQL stores
RULE_TAG = re.compile(r"^(pass|fail) value=(.*) threshold=(.*)$")
HEADLINE = (  # (metrics.json key, label), in the order the card lists them
    ("accuracy", "accuracy"),
    ("macro_f1", "macro-F1"),
    ("roc_auc_ovr_macro", "ROC AUC (one-vs-rest, macro)"),
    ("ece", "expected calibration error"),
    ("shifted.accuracy", "accuracy on `test_shifted`"),
    ("latency.batch_1.p50_ms", "served latency p50, batch 1 (ms)"),
    ("latency.batch_1.p95_ms", "served latency p95, batch 1 (ms)"),
)
# variant (`mmops.variant`) -> the tag prefix of its comparison (register.register_variant's `section`)
VARIANT_REPORTS = {"int8": "quantize", "onnx": "onnx", "distilled": "distill", "pruned": "prune"}
log = logging.getLogger(__name__)


def facts_tags(classes: list[str], modalities: list[str]) -> dict[str, str]:
    """The version tags the cards read the classes and modalities from."""
    listed = json.dumps(classes)
    return {MODALITIES_TAG: ",".join(modalities),
            CLASSES_TAG: listed if len(listed) <= MAX_CLASSES_TAG_CHARS else json.dumps(classes[:50] + ["…"])}


def _classes(tags: Mapping[str, str]) -> list[str]:
    try:
        return [str(c) for c in json.loads(tags.get(CLASSES_TAG, "[]"))]
    except ValueError:
        return []


def _modalities(tags: Mapping[str, str]) -> list[str]:
    return [m for m in tags.get(MODALITIES_TAG, "").split(",") if m]


def what_it_classifies(tags: Mapping[str, str]) -> str:
    classes, modalities = _classes(tags), _modalities(tags)
    if not classes:
        return "Classes and modalities were not recorded for this version (registered before mmops recorded them)."
    shown = ", ".join(f"`{c}`" for c in classes)
    inputs = ", ".join(f"`{m}`" for m in modalities) or "unknown inputs"
    return f"Classifies samples from {inputs} into {len(classes)} classes: {shown}."


def gate_rules(tags: Mapping[str, str]) -> list[tuple[str, str, str, str]]:
    """(rule, verdict, value, threshold) of every `gate.<rule>` verdict tag, in tag order."""
    rules = []
    for key, value in sorted(tags.items()):
        if key.startswith("gate.") and (m := RULE_TAG.match(value)):
            rules.append((key.removeprefix("gate."), m.group(1), m.group(2), m.group(3)))
    return rules


def _fmt(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"


def _table(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    cells = [head, tuple("---" for _ in head), *rows]
    return ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]


def _gate_section(tags: Mapping[str, str]) -> list[str]:
    decision = tags.get("gate.decision", "not gated")
    rules = gate_rules(tags)
    failed = [r for r, verdict, _, _ in rules if verdict == "fail"]
    compared = tags.get("gate.champion_compared", "none")
    against = f"champion v{compared}" if compared not in ("none", "") else "no champion (floors and ceilings alone)"
    lines = ["### Gate", "",
             f"**{decision}** — {len(rules) - len(failed)} of {len(rules)} rules passed"
             + (f" (failed: {', '.join(failed)})" if failed else "") + f"; compared against {against}."]
    if held := tags.get("gate.held_by_pin"):
        lines += ["", f"Held: passed the gate, but a pin keeps the champion ({held})."]
    if regated := tags.get("gate.regated_against"):
        lines += ["", f"The champion moved during the comparison: gated again against v{regated}."]
    if rules:
        lines += ["", *_table(("rule", "value", "threshold", "verdict"),
                              [(r, v, t, "pass" if verdict == "pass" else "**FAIL**") for r, verdict, v, t in rules])]
    return lines


def _metrics_section(metrics: Mapping[str, float]) -> list[str]:
    rows = [(label, _fmt(metrics[key])) for key, label in HEADLINE if key in metrics]
    if not rows:
        return []
    n = f" ({int(metrics['n_test'])} rows)" if "n_test" in metrics else ""
    return ["", f"### Headline metrics, frozen test split{n}", "", *_table(("metric", "value"), rows)]


def _lineage_section(tags: Mapping[str, str]) -> list[str]:
    get = tags.get
    commit = get("lineage.git_commit", "unknown")
    code = f"git `{commit[:12]}`" + (" (uncommitted changes)" if get("lineage.git_dirty") == "true" else "")
    rows = [
        ("dataset", f"`{get('lineage.data_hash', 'unknown')[:16]}` (sha256 of manifest and media)"),
        ("rows", get("lineage.split_rows", "not recorded")),
        ("DVC", f"`{get('lineage.dvc_data_md5', 'not recorded')}`"),
        ("frozen test rows", f"`{get('lineage.test_data_hash', 'unknown')[:16]}`"),
        ("code", code),
        ("params", f"`{get('lineage.params_hash', 'unknown')}` (sha256 of the resolved params)"),
        ("model files", f"`{get('lineage.model_hash', 'unknown')[:16]}` (checked before every load)"),
        ("run", f"`{get('lineage.run_id', 'unknown')}`"),
    ]
    return ["", "### Data and code", "", *_table(("", "from"), rows)]


def _variant_section(tags: Mapping[str, str], variant: str) -> list[str]:
    source = tags.get("mmops.variant_of", "?")
    prefix = VARIANT_REPORTS.get(variant, variant)
    rows = [(k.removeprefix(f"{prefix}."), v) for k, v in sorted(tags.items())
            if k.startswith(f"{prefix}.") and not k.endswith("_version") and k != f"{prefix}.error"]
    lines = ["### Variant", "",
             f"The **{variant}** variant of v{source}: it is not gated itself, it follows v{source}. "
             f"Compared with v{source} on the test split (`{prefix}.*` tags):"]
    return (lines + ["", *_table((f"vs v{source}", "value"), rows)]) if rows else lines


def _usage_section(name: str, version: str, modalities: list[str]) -> list[str]:
    media = {"image": "base64 PNG", "audio": "base64 WAV"}
    value = {m: f"<{media[m]}>" if m in media else "some text" for m in modalities}
    instance = ", ".join(f'"{m}": "{v}"' for m, v in value.items())
    return [
        "", "### How to call", "",
        "Inputs are optional strings (media base64-encoded; a missing modality is null); the output is "
        "`label` plus one probability column per class (the schema is this version's signature).",
        "", "```python",
        "import mlflow, pandas as pd",
        f'model = mlflow.pyfunc.load_model("models:/{name}/{version}")',
        "model.predict(pd.DataFrame({",
        *(f'    "{m}": ["{v}"],' for m, v in value.items()),
        "}))  # -> label, one probability column per class",
        "```", "", "```bash",
        f"mmops serve --model-name {name} --alias champion  # this version while it is the champion",
        "curl -s localhost:8080/predict -H 'content-type: application/json' \\",
        f"  -d '{{\"instances\": [{{{instance}}}]}}'",
        f"mlflow models predict -m models:/{name}/{version} -i input.json -t json --env-manager local",
        "```",
    ]


def version_card(name: str, version: str, tags: Mapping[str, str], metrics: Mapping[str, float]) -> str:
    """The Markdown description of one version: what it classifies, its gate decision with every
    rule's value and threshold (a variant: its comparison with its source), headline metrics,
    the data and code it came from, and how to call it. `metrics`: metrics.json keys, flattened."""
    variant = tags.get("mmops.variant")
    lines = [f"**{name} v{version}**" + (f" ({variant} variant of v{tags.get('mmops.variant_of', '?')})" if variant else ""),
             "", what_it_classifies(tags), ""]
    lines += _variant_section(tags, variant) if variant else _gate_section(tags)
    lines += _metrics_section(metrics) + _lineage_section(tags) + _usage_section(name, version, _modalities(tags) or ["text"])
    return "\n".join(lines) + "\n"


def model_card(name: str, tags: Mapping[str, str], champion: str | None, newest: str | None,
               aliases: Mapping[str, str], metrics: Mapping[str, float]) -> str:
    """The registered model's Markdown description: what it classifies (from `tags`, the champion's or
    else the newest version's), the champion with its headline scores, the aliases, where the
    promotion history is."""
    lines = [f"**{name}**: a multimodal classifier trained and gated by mmops.", "", what_it_classifies(tags), ""]
    if champion:
        scores = ", ".join(f"{label} {_fmt(metrics[key])}" for key, label in HEADLINE[:2] if key in metrics)
        lines.append(f"**Champion: [v{champion}](#/models/{name}/versions/{champion})**"
                     + (f" — {scores} on its frozen test split" if scores else "")
                     + f". Load it as `models:/{name}@champion`; `mmops serve` serves it and follows the alias.")
    else:
        lines.append(f"**No champion yet**: no version has passed the gate (newest: v{newest or '?'}).")
    others = [f"`{a}` → v{v}" for a, v in sorted(aliases.items()) if a != "champion"]
    if others:
        lines += ["", "Aliases: " + ", ".join(others) + "."]
    lines += ["", "Every version's description is its model card (gate decision, metrics, lineage, usage). "
              "Alias moves (who, when, why, the gate's verdicts) are kept by mmops: `mmops history`."]
    return "\n".join(lines) + "\n"


def run_metrics(client, run_id: str | None) -> dict[str, float]:
    """The `test_*` metrics the register stage logged on a run, without the prefix ({} without a run)."""
    if not run_id:
        return {}
    from mlflow.exceptions import MlflowException

    try:
        logged = client.get_run(run_id).data.metrics
    except MlflowException:
        return {}
    return {k.removeprefix("test_"): v for k, v in logged.items() if k.startswith("test_")}


def write_cards(client, name: str, versions: list[str | None], champion: str | None) -> None:
    """Set the card of each version in `versions` (None entries skipped) and the registered model's."""
    for version in filter(None, versions):
        mv = client.get_model_version(name, version)
        client.update_model_version(name, version, description=version_card(name, version, mv.tags,
                                                                            run_metrics(client, mv.run_id)))
    write_model_card(client, name, champion)


def write_model_card(client, name: str, champion: str | None) -> None:
    """Set the registered model's card for `champion` (None: no champion). A failure is logged, not
    raised: the card describes the registry, it holds no state (the alias already moved)."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
        if champion is not None:
            source, mv = champion, client.get_model_version(name, champion)
        else:  # what the newest fp32 version classifies
            fp32 = [v for v in client.search_model_versions(f"name='{name}'") if not v.tags.get("mmops.variant")]
            mv = max(fp32, key=lambda v: int(v.version), default=None)
            source = str(mv.version) if mv else None
        card = model_card(name, mv.tags if mv else {}, champion, source, dict(model.aliases),
                          run_metrics(client, mv.run_id if mv else None))
        client.update_registered_model(name, description=card)
    except MlflowException as err:
        log.warning("%s: the registered model's description (model card) was not updated: %s", name, err)
