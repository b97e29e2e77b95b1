"""`make demo`: run the whole pipeline on the built-in dataset, then an unchanged rerun, and write
what they measured (wall time, stages run or reused, test metrics, the registry's decision) to
`bench/demo.json` and the README's `demo` section. `python -m bench.demo --help` for options.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
METRICS = ("accuracy", "macro_f1", "shifted.accuracy", "shifted.macro_f1", "without_text.macro_f1",
           "without_image.macro_f1", "without_audio.macro_f1", "roc_auc_ovr_macro", "ece",
           "latency.batch_1.p50_ms", "latency.batch_1.p95_ms", "latency.batch_32.per_sample_p50_ms",
           "latency.model_only.batch_1.p50_ms")
STAGE_LINE = re.compile(r"\b(validate|preprocess|train|evaluate|register): (up to date|running)")
NOTHING_RAN = "nothing ran"  # `mmops run` found every stage up to date and started no flow


def run_pipeline(mmops: str, extra: list[str]) -> tuple[float, str]:
    """Run `mmops run`, echoing its output; (wall seconds, which stages ran and which were reused)."""
    started = time.perf_counter()
    proc = subprocess.Popen([mmops, "run", *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ran, reused = [], []
    for line in proc.stdout:
        sys.stdout.write(line)
        match = STAGE_LINE.search(line)
        if match:
            (reused if match.group(2) == "up to date" else ran).append(match.group(1))
        elif NOTHING_RAN in line:
            reused = ["every stage (checked before starting Prefect)"]
    if proc.wait() != 0:
        raise SystemExit(f"`mmops run` failed (exit {proc.returncode})")
    seconds = time.perf_counter() - started
    what = "; ".join(p for p in (f"ran {', '.join(ran)}" if ran else "", f"reused {', '.join(reused)}" if reused else "") if p)
    return seconds, what or "see the log"


def figures(root: Path) -> dict:
    """The test metrics, the training summary and the registry's decision of the latest run."""
    from mmops.flatten import flatten

    metrics = flatten(json.loads((root / "artifacts/metrics/metrics.json").read_text()))
    out: dict = {k: metrics[k] for k in METRICS if k in metrics}
    summary = json.loads((root / "artifacts/model/history.json").read_text())["summary"]
    out |= {f"training.{k}": v for k, v in summary.items() if isinstance(v, (int, float, str))}
    registry = json.loads((root / "reports/registry.json").read_text())
    out["registered version"] = f"v{registry['version']}"
    out["decision"] = "promoted to champion" if registry["promoted"] else f"not promoted (champion v{registry['champion_version']})"
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mmops", default=str(Path(sys.executable).parent / "mmops"), help="the mmops executable")
    parser.add_argument("--no-rerun", action="store_true", help="skip the unchanged rerun")
    parser.add_argument("--no-readme", action="store_true", help="write bench/demo.json only")
    args, extra = parser.parse_known_args(argv)
    sys.path.insert(0, str(ROOT))
    from bench.__main__ import machine
    from bench.readme import DEMO, update

    runs = []
    seconds, what = run_pipeline(args.mmops, extra)
    runs.append({"run": "`make demo`", "seconds": round(seconds, 1), "what": what})
    if not args.no_rerun:
        seconds, what = run_pipeline(args.mmops, extra)
        runs.append({"run": "unchanged rerun", "seconds": round(seconds, 1), "what": what})
    demo = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
            "runs": runs, "figures": figures(Path.cwd())}
    if len(runs) == 2:
        demo["figures"]["unchanged rerun / first run"] = runs[1]["seconds"] / runs[0]["seconds"]
    DEMO.write_text(json.dumps(demo, indent=2) + "\n")
    print(f"written {DEMO}")
    if not args.no_readme:
        print(f"updated README.md sections: {', '.join(update())}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
