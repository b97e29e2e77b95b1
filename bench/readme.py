"""The README's generated sections: each one is rendered from a committed file, never typed.

    <!-- NAME:begin (...) -->  ...  <!-- NAME:end -->

`bench` renders `bench/results.json` (`make bench`), `byod` copies `bench/byod.md`
(`bench/bench_byod.py`), `demo` renders `bench/demo.json` (`make demo`). `check()` is the drift
test: a README whose sections differ from what their sources render fails `make test`.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"
RESULTS = HERE / "results.json"
BYOD = HERE / "byod.md"
DEMO = HERE / "demo.json"


def bench_markdown(results: dict) -> str:
    """The benchmark table: the machine, then one row per figure."""
    m = results["machine"]
    head = (f"Latest `make bench` ({results['when'][:10]}; {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, "
            f"GPU: {m['gpu'] or 'none'}, torch {m['torch']}). Written to `bench/results.json`:\n\n")
    rows = ["| bench | figure | value | goal | detail |", "| --- | --- | --- | --- | --- |"]
    rows += [f"| {r['bench']} | {r['figure']} | {r['value']:.4g} {r['unit']} | {r['goal']} | {r['detail']} |".replace("  |", " |")
             for r in results["figures"]]
    return head + "\n".join(rows) + "\n"


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
        out["bench"] = bench_markdown(json.loads(RESULTS.read_text()))
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
