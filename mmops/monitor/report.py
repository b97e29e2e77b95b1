"""The drift document (`mmops.monitor.drift.check`) as a self-contained HTML page with plots, and as Markdown."""

from __future__ import annotations

import base64
import html
import io

import pandas as pd

from mmops.monitor.reference import split_reference


def _number(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value else f"{value:.{digits}f}"
    return str(value)


def verdict(doc: dict) -> str:
    """One line: the decision and why."""
    if doc["status"] != "ok":
        return doc["status"]
    if doc["triggered"]:
        return "retrain: " + "; ".join(doc["reasons"])
    return "no retrain: no threshold crossed"


def summary_rows(doc: dict) -> list[dict]:
    """One row per modality and one for the predictions: what the CLI and the Prefect table show."""
    rows = []
    for modality, result in doc["modalities"].items():
        values = [r for c, r in result["columns"].items() if "skipped" not in r and not c.endswith(".present")]
        detail = f"{sum(r['drifted'] for r in values)}/{len(values)} value columns drifted"
        if result.get("presence_drifted"):
            detail += "; how often it is present drifted"
        rows.append({"check": f"{modality} features", "score": _number(result["score"]),
                     "drifted": "DRIFT" if result["drifted"] else "ok", "detail": detail})
    prediction = doc["prediction"]
    rows.append({"check": "predicted labels", "score": _number(prediction.get("score")),
                 "drifted": "DRIFT" if prediction.get("drifted") else "ok",
                 "detail": "" if not prediction.get("test") else f"{prediction['test']} {prediction['kind'].replace('_', '-')}, "
                 f"drifts {'below' if prediction['kind'] == 'p_value' else 'above'} {prediction['threshold']}"})
    return rows


def live_line(doc: dict) -> str:
    live = doc.get("live")
    if not live:
        return "live metrics: no feedback labels in the window"
    drop = "" if live.get("accuracy_drop") is None else (
        f", {live['accuracy_drop']:.3f} below the registered test accuracy {live['reference_accuracy']:.3f}")
    return f"live accuracy {live['accuracy']:.3f}, macro-F1 {live['macro_f1']:.3f} on {live['n']} labelled predictions{drop}"


def render_markdown(doc: dict) -> str:
    lines = [f"## Drift: {doc['model_name']} v{doc['model_version']}", "",
             f"Window: {doc['window']['n']} predictions ({_window_text(doc['window'])}), checked {doc['time']}.", "",
             "| check | score | drifted | detail |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['check']} | {r['score']} | {r['drifted']} | {r['detail']} |" for r in summary_rows(doc)]
    lines += ["", live_line(doc), "", f"**Decision:** {verdict(doc)}", ""]
    return "\n".join(lines)


def _window_text(window: dict) -> str:
    parts = []
    if window.get("last"):
        parts.append(f"last {window['last']}")
    if window.get("minutes"):
        parts.append(f"last {window['minutes']:g} min")
    if window.get("first") and window.get("until"):
        parts.append(f"{window['first']} .. {window['until']}")
    return ", ".join(parts) or "whole log"


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _plots(doc: dict, reference: pd.DataFrame, window: pd.DataFrame) -> list[tuple[str, str]]:
    """(caption, base64 PNG): reference vs window histograms of each tested numeric column, label shares."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    features, _ = split_reference(reference)
    out = []
    for modality, result in doc["modalities"].items():
        numeric = [c for c, r in result["columns"].items() if "reference_mean" in r]
        if not numeric:
            continue
        fig, axes = plt.subplots(1, len(numeric), figsize=(3.2 * len(numeric), 2.4), squeeze=False)
        for ax, column in zip(axes[0], numeric):
            r = result["columns"][column]
            ref, cur = features[column].dropna(), window[column].dropna()
            ax.hist([ref, cur], bins=20, density=True, label=["reference", "window"], color=["#7f8c8d", "#e67e22"])
            ax.set_title(f"{column}\n{r['test']} {_number(r['score'])}{' DRIFT' if r['drifted'] else ''}", fontsize=8)
            ax.tick_params(labelsize=7)
        axes[0][0].legend(fontsize=7)
        out.append((f"{modality}: reference (training rows) vs window", _png(fig)))
    prediction = doc["prediction"]
    if prediction.get("reference_shares") is not None:
        labels = sorted(set(prediction["reference_shares"]) | set(prediction["window_shares"]))
        fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(labels)), 2.4))
        x = range(len(labels))
        ax.bar([i - 0.2 for i in x], [prediction["reference_shares"].get(c, 0) for c in labels], 0.4,
               label="reference (test split)", color="#7f8c8d")
        ax.bar([i + 0.2 for i in x], [prediction["window_shares"].get(c, 0) for c in labels], 0.4,
               label="window", color="#e67e22")
        ax.set_xticks(list(x), labels, fontsize=7)
        ax.set_title("predicted labels (share)", fontsize=8)
        ax.legend(fontsize=7)
        out.append(("predicted-label distribution", _png(fig)))
    return out


CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;font-size:.9em}
th{background:#f3f3f3}.drift{color:#b03a2e;font-weight:bold}.ok{color:#1e8449}.verdict{font-size:1.1em;padding:.6em;
background:#fdf2e9;border-left:4px solid #e67e22}img{max-width:100%}"""


def render_html(doc: dict, reference: pd.DataFrame, window: pd.DataFrame) -> str:
    """The whole report: decision, summary, every column's test, live metrics and the plots."""
    e = html.escape
    title = f"{e(doc['model_name'])} v{e(doc['model_version'])}"
    span, reference_size = doc["window"], doc["reference"]
    parts = [
        (f"<!doctype html><html><head><meta charset='utf-8'><title>mmops drift: {title}</title>"
         f"<style>{CSS}</style></head><body><h1>Drift report: {title}</h1>"),
        (f"<p>Checked {e(doc['time'])}. Window: {span['n']} predictions ({e(_window_text(span))}); reference: "
         f"{reference_size['n_features']} training rows, {reference_size['n_predictions']} test predictions.</p>"),
        f"<p class='verdict'>{e(verdict(doc))}</p>",
        "<h2>Summary</h2><table><tr><th>check</th><th>score</th><th>drifted</th><th>detail</th></tr>",
    ]
    for r in summary_rows(doc):
        css = "drift" if r["drifted"] == "DRIFT" else "ok"
        parts.append(f"<tr><td>{e(r['check'])}</td><td>{r['score']}</td><td class='{css}'>{r['drifted']}</td>"
                     f"<td>{e(r['detail'])}</td></tr>")
    parts.append(f"</table><p>{e(live_line(doc))}</p>")
    if doc["status"] == "ok":
        parts.append("<h2>Columns</h2><table><tr><th>column</th><th>test</th><th>score</th><th>threshold</th>"
                     "<th>drifted</th><th>reference mean</th><th>window mean</th><th>note</th></tr>")
        for result in doc["modalities"].values():
            for column, r in result["columns"].items():
                css = "drift" if r["drifted"] else "ok"
                parts.append(
                    f"<tr><td>{e(column)}</td><td>{e(r.get('test') or '')}</td><td>{_number(r.get('score'))}</td>"
                    f"<td>{_number(r.get('threshold'))}</td><td class='{css}'>{_number(r['drifted'])}</td>"
                    f"<td>{_number(r.get('reference_mean'))}</td><td>{_number(r.get('window_mean'))}</td>"
                    f"<td>{e(r.get('skipped', ''))}</td></tr>")
        parts.append("</table>")
        for caption, png in _plots(doc, reference, window):
            parts.append(f"<h3>{e(caption)}</h3><img alt='{e(caption)}' src='data:image/png;base64,{png}'>")
    parts.append("</body></html>")
    return "\n".join(parts)
