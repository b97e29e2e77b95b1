"""Benchmark "is everything up to date?": `python bench/bench_uptodate.py [--repeats 3] [--params FILE]`.

In a temporary DVC project holding the pipeline (`dvc.yaml`, the `mmops/` sources its stages depend
on, the project's `params.yaml`: the real demo), as a user would run it:
  - cold: the first `mmops run` (no Prefect server configured: the flow starts its own);
  - then, alternating with nothing changed, `dvc repro` and `mmops run`, `--repeats` times each; each
    must run no stage (checked in their output).
Figures: no-op `mmops run` ÷ no-op `dvc repro` (medians, goal <= 3) and no-op `mmops run` ÷ the cold
run (goal <= 0.05). Both no-op commands decide from `dvc.lock` (mmops/orchestrate/uptodate.py); the
difference is what each imports and starts. The cold run's cost grows with the data and epochs; a
no-op costs interpreter start-up, imports and DVC's hash check (file stats, its state cache).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from bench._report import record  # noqa: E402

BIN = Path(sys.executable).parent


def project(root: Path, params: Path) -> dict[str, str]:
    """A DVC project (no git) with the pipeline and `params`; the environment to run it in."""
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(REPO / name, root / name)
    shutil.copy(params, root / "params.yaml")
    shutil.copytree(REPO / "mmops", root / "mmops", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env |= {"PATH": f"{BIN}{os.pathsep}{env['PATH']}", "DVC_NO_ANALYTICS": "1"}
    subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=root, env=env, check=True)
    return env


def timed(argv: list[str], root: Path, env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds, done.stdout + done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mmops-bench-uptodate-"))
    try:
        env = project(root, args.params)
        mmops_run, dvc_repro = [str(BIN / "mmops"), "run"], [str(BIN / "dvc"), "repro"]
        cold, _ = timed(mmops_run, root, env)
        print(f"[uptodate] cold `mmops run`: {cold:.1f} s", flush=True)
        noop_run, noop_repro = [], []
        for _ in range(args.repeats):
            seconds, out = timed(dvc_repro, root, env)
            assert "Running stage" not in out, out[-3000:]
            noop_repro.append(seconds)
            seconds, out = timed(mmops_run, root, env)
            assert "nothing ran" in out, out[-3000:]
            noop_run.append(seconds)
        run, repro = statistics.median(noop_run), statistics.median(noop_repro)
        detail = (f"no-op `mmops run` {run:.2f} s, no-op `dvc repro` {repro:.2f} s (medians of {args.repeats}, "
                  f"alternated), cold `mmops run` {cold:.1f} s; demo params")
        print(f"[uptodate] {detail}", flush=True)
        record("uptodate", "no-op mmops run / no-op dvc repro", run / repro, "ratio", "<= 3", detail)
        record("uptodate", "no-op mmops run / cold mmops run", run / cold, "ratio", "<= 0.05", detail)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
