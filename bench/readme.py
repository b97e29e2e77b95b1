"""The README's generated sections: each one is rendered from a committed file, never typed.

    <!-- NAME:begin (...) -->  ...  <!-- NAME:end -->

`bench` renders `bench/results.json` (`make bench`), `scale` renders its `scale` figures as a table
per N and stage with the plot `bench/scale.png` (`bench/bench_scale.py`), `byod` copies `bench/byod.md`
(`bench/bench_byod.py`), `demo` renders `bench/demo.json` (`make demo`). `check()` is the drift
test: a README whose sections differ from what their sources render fails `make test`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"
RESULTS = HERE / "results.json"
BYOD = HERE / "byod.md"
DEMO = HERE / "demo.json"


def _measured(results: dict, bench: str) -> dict:
    """When `bench` was last measured and on which machine: `when`, `cpu`, `cores` (a partial
    rerun keeps the others'; a file from before per-benchmark records has one for all)."""
    m = results["machine"]
    return results.get("measured", {}).get(bench, {"when": results["when"], "cpu": m["cpu"], "cores": m["cores"]})


def _day_cpu(results: dict, bench: str) -> str:
    m = _measured(results, bench)
    return f"{m['when'][:10]}, {m['cpu']}"


def bench_markdown(results: dict) -> str:
    """The benchmark table: the machine, then one row per figure."""
    m = results["machine"]
    head = (f"Latest figures of each benchmark (`make bench`; the last run {results['when'][:10]} on {m['cpu']}, "
            f"{m['cores']} cores, {m['memory_gib']} GiB, GPU: {m['gpu'] or 'none'}, torch {m['torch']}; `measured`: "
            "when and on which CPU that benchmark last ran, as a partial rerun keeps the others' rows). Written to "
            "`bench/results.json`:\n\n")
    rows = ["| bench | measured | figure | value | goal | detail |", "| --- | --- | --- | --- | --- | --- |"]
    rows += [f"| {r['bench']} | {_day_cpu(results, r['bench'])} | {r['figure']} | {r['value']:.4g} {r['unit']} | {r['goal']} "
             f"| {r['detail']} |".replace("  |", " |")
             for r in results["figures"] if r["bench"] != "scale"]
    scale = "\nThe `scale` figures have their own table below.\n" if any(r["bench"] == "scale" for r in results["figures"]) else ""
    return head + "\n".join(rows) + "\n" + scale


SCALE_STAGE = re.compile(r"^N=(\d+) (\w+): (wall|peak RSS|time per sample)$")


def scale_markdown(results: dict) -> str:
    """The scale benchmark: wall time, time per sample and peak RSS per N and stage, its ratios, the plot."""
    figures = [r for r in results["figures"] if r["bench"] == "scale"]
    cells: dict[tuple[int, str], dict[str, dict]] = {}
    for r in figures:
        m = SCALE_STAGE.match(r["figure"])
        if m:
            cells.setdefault((int(m[1]), m[2]), {})[m[3]] = r
    scale = _measured(results, "scale")
    head = (f"Latest `python -m bench scale` ({scale['when'][:10]}, {scale['cpu']}, {scale['cores']} cores): each stage "
            "as its own `mmops` process on generated datasets of 224x224 RGB images, 5 s 16 kHz WAV clips, short "
            "texts and 8 classes; peak RSS summed over the stage's process tree (`bench/bench_scale.py`):\n\n")
    rows = ["| N | stage | wall | per sample | peak RSS |", "| --- | --- | --- | --- | --- |"]
    for (n, stage), c in cells.items():
        rows.append(f"| {n} | {stage} | {c['wall']['value']:.1f} s | {c['time per sample']['value']:.2f} ms "
                    f"| {c['peak RSS']['value']:.0f} MB |")
    others = ["| figure | value | goal |", "| --- | --- | --- |"]
    others += [f"| {r['figure']} | {r['value']:.4g} {r['unit']} | {r['goal']} |".replace("  |", " |")
               for r in figures if not SCALE_STAGE.match(r["figure"])]
    plot = "![Wall time and peak RSS per stage against N](bench/scale.png)\n"
    return head + "\n".join(rows) + "\n\n" + "\n".join(others) + "\n\n" + plot


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{round(seconds % 60):02d}s"


def demo_markdown(demo: dict) -> str:
    """What the latest `make demo` measured: wall time per run, the test metrics, the decision."""
    m, runs = demo["machine"], demo["runs"]
    head = (f"Latest `make demo` ({demo['when'][:10]}; {m['cpu']}, {m['cores']} cores, GPU: {m['gpu'] or 'none'}, "
            f"torch {m['torch']}; default `params.yaml`). Written to `bench/demo.json`:\n\n")
    rows = ["| run | wall time | what ran |", "| --- | --- | --- |"]
    rows += [f"| {r['run']} | {_minutes(r['seconds'])} | {r['what']} |" for r in runs]
    table = ["", "| figure | value |", "| --- | --- |"]
    table += [f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in demo["figures"].items()]
    return head + "\n".join(rows) + "\n" + "\n".join(table) + "\n"


def sections() -> dict[str, str]:
    """Every generated section whose source exists, rendered."""
    out = {}
    if RESULTS.exists():
        results = json.loads(RESULTS.read_text())
        out["bench"] = bench_markdown(results)
        if any(r["bench"] == "scale" for r in results["figures"]):
            out["scale"] = scale_markdown(results)
    if BYOD.exists():
        out["byod"] = BYOD.read_text()
    if DEMO.exists():
        out["demo"] = demo_markdown(json.loads(DEMO.read_text()))
    return out


def _split(text: str, name: str) -> tuple[str, str, str, str] | None:
    """(before, begin marker line, body, after) of section `name`, or None when the README lacks it."""
    begin, end = f"<!-- {name}:begin", f"<!-- {name}:end -->"
    if begin not in text or end not in text:
        return None
    head, rest = text.split(begin, 1)
    marker, rest = rest.split("\n", 1)
    body, tail = rest.split(end, 1)
    return head, begin + marker, body, end + tail


def update(readme: Path = README) -> list[str]:
    """Rewrite the README's generated sections from their sources; returns the names rewritten."""
    text, done = readme.read_text(), []
    for name, body in sections().items():
        parts = _split(text, name)
        if parts is not None:
            head, marker, _, tail = parts
            text, done = f"{head}{marker}\n{body}{tail}", done + [name]
    readme.write_text(text)
    return done


def check(readme: Path = README) -> list[str]:
    """The generated sections whose README text differs from what their source renders."""
    text = readme.read_text()
    drifted = []
    for name, body in sections().items():
        parts = _split(text, name)
        if parts is None or parts[2] != body:
            drifted.append(name)
    return drifted
