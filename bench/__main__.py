"""`python -m bench` (or `make bench`): run every `bench/bench_*.py`, print one table of their
figures and write it to `bench/results.json` (with the machine it ran on).

Each benchmark compares against a baseline measured in the same run (see `bench/_report.py`).
`python -m bench validate serve` runs only the named benchmarks.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"


def machine() -> dict:
    """What the figures depend on: CPU, cores, memory, accelerator, library versions."""
    import torch

    cpu = platform.processor()
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def run(scripts: list[Path]) -> tuple[list[dict], list[str]]:
    """Run each script in its own process; collect the figures it records."""
    rows, failed = [], []
    with tempfile.TemporaryDirectory(prefix="mmops-bench-") as tmp:
        sink = Path(tmp) / "figures.jsonl"
        sink.touch()
        for script in scripts:
            print(f"\n=== {script.name} ===", flush=True)
            started = time.perf_counter()
            env = {**os.environ, "MMOPS_BENCH_JSON": str(sink)}
            if subprocess.run([sys.executable, str(script)], env=env).returncode != 0:
                failed.append(script.name)
            print(f"--- {script.name}: {time.perf_counter() - started:.0f}s", flush=True)
        rows = [json.loads(line) for line in sink.read_text().splitlines() if line.strip()]
    return rows, failed


def print_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="mmops benchmarks")
    for column in ("bench", "figure", "value", "goal", "detail"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(r["bench"], r["figure"], f"{r['value']:.4g} {r['unit']}".strip(), r["goal"], r["detail"])
    Console(width=160).print(table)


def merge(previous: dict | None, rows: list[dict], rerun: set[str], now: str, machine: dict,
          failed: list[str]) -> dict:
    """The results file: this run's figures, plus the previous file's for benchmarks not rerun,
    each benchmark with when and on which CPU it was last measured (`measured`)."""
    measured = {r["bench"]: {"when": now, "cpu": machine["cpu"], "cores": machine["cores"]} for r in rows}
    if previous is not None:  # a partial rerun keeps the other benchmarks' latest figures, dates and CPUs
        kept = [r for r in previous["figures"] if r["bench"] not in rerun]
        before = {"when": previous["when"], "cpu": previous["machine"]["cpu"], "cores": previous["machine"]["cores"]}
        measured = {r["bench"]: previous.get("measured", {}).get(r["bench"], before) for r in kept} | measured
        rows = kept + rows
    return {"when": now, "machine": machine, "benchmarks": sorted({r["bench"] for r in rows}),
            "measured": dict(sorted(measured.items())), "failed": failed, "figures": rows}


def main(argv: list[str]) -> int:
    wanted = set(argv)
    scripts = [s for s in sorted(HERE.glob("bench_*.py")) if not wanted or s.stem.removeprefix("bench_") in wanted]
    rows, failed = run(scripts)
    previous = json.loads(RESULTS.read_text()) if wanted and RESULTS.exists() else None
    rerun = {s.stem.removeprefix("bench_") for s in scripts}
    results = merge(previous, rows, rerun, datetime.now(timezone.utc).isoformat(timespec="seconds"), machine(), failed)
    print_table(results["figures"])
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {RESULTS}")
    from bench.readme import update

    print(f"updated README.md sections: {', '.join(update())}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
