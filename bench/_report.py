"""How a benchmark hands its figures to `python -m bench` (which writes `bench/results.json`).

Each `bench_*.py` calls `record(...)` once per figure. Figures are printed as they come and, when
`MMOPS_BENCH_JSON` is set (by `python -m bench`), appended to that file as JSON lines.
"""

from __future__ import annotations

import json
import os


def record(bench: str, figure: str, value: float, unit: str = "", goal: str = "", detail: str = "") -> None:
    """One measured figure, e.g. record("flow", "flow / in-process", 1.04, "ratio", "<= 1.10")."""
    row = {"bench": bench, "figure": figure, "value": value, "unit": unit, "goal": goal, "detail": detail}
    print(f"[{bench}] {figure}: {value:.4g} {unit}" + (f" (goal {goal})" if goal else ""), flush=True)
    path = os.environ.get("MMOPS_BENCH_JSON")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps(row) + "\n")
