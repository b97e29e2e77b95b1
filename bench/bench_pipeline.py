"""Benchmark the pipeline's plumbing: `python bench/bench_pipeline.py [--samples 120]`.

Two figures, each against a baseline measured in the same run (featurisation: bench_features.py):

- `dvc repro` with nothing changed on the mmops pipeline ÷ the same on a two-stage toy pipeline
  (goal <= 1.5): what DVC's bookkeeping costs on our 6 stages and ~N media files;
- `mlflow.pyfunc.log_model` of a trained model folder, in seconds (goal <= 1 s).
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._report import record  # noqa: E402

BENCH = "pipeline"
BIN = Path(sys.executable).parent
SMALL = ["train.epochs=1", "train.batch_size=32"]
TOY_DVC = """
stages:
  one:
    cmd: python -c "import shutil; shutil.copy('in.txt', 'mid.txt')"
    deps: [in.txt]
    outs: [mid.txt]
  two:
    cmd: python -c "import shutil; shutil.copy('mid.txt', 'out.txt')"
    deps: [mid.txt]
    outs: [out.txt]
"""


def _sh(cmd: list[str], cwd: Path, env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed in {cwd}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def _dvc_project(root: Path, env: dict) -> None:
    root.mkdir(parents=True)
    _sh(["git", "init", "-q"], root, env)
    _sh([str(BIN / "dvc"), "init", "-q"], root, env)


def _noop_seconds(root: Path, env: dict, repeats: int) -> float:
    return statistics.median(_sh([str(BIN / "dvc"), "repro"], root, env) for _ in range(repeats))


def bench_dvc(tmp: Path, samples: int, repeats: int) -> None:
    import yaml

    from mmops.params_file import load_params

    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "DVC_SITE_CACHE_DIR": str(tmp / "dvc-site"),
           "DVC_NO_ANALYTICS": "1", "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}"}
    ours = tmp / "ours"
    _dvc_project(ours, env)
    for name in ("dvc.yaml", "pyproject.toml"):
        shutil.copy(REPO / name, ours / name)
    shutil.copytree(REPO / "mmops", ours / "mmops", ignore=shutil.ignore_patterns("__pycache__"))
    # every key DVC tracks must be in params.yaml: write the full, validated params
    small = load_params(REPO / "params.yaml", SMALL + [f"demo.n_samples={samples}"])
    (ours / "params.yaml").write_text(yaml.safe_dump(small.dump(), sort_keys=False))
    print(f"dvc repro of the mmops pipeline on {samples} samples (first, full run) ...", flush=True)
    full = _sh([str(BIN / "dvc"), "repro"], ours, env)
    toy = tmp / "toy"
    _dvc_project(toy, env)
    (toy / "dvc.yaml").write_text(TOY_DVC)
    (toy / "in.txt").write_text("hello\n")
    _sh([str(BIN / "dvc"), "repro"], toy, env)
    ours_noop, toy_noop = _noop_seconds(ours, env, repeats), _noop_seconds(toy, env, repeats)
    record(BENCH, "dvc repro no-op, mmops ÷ two-stage toy", ours_noop / toy_noop, "ratio", "<= 1.5",
           f"mmops {ours_noop:.2f}s, toy {toy_noop:.2f}s (median of {repeats}); full run {full:.0f}s")


def bench_log_model(tmp: Path, data_dir: Path, repeats: int) -> None:
    import mlflow

    import mmops
    from mmops import stages
    from mmops.catalog import Catalog
    from mmops.inference.pyfunc import MODEL_DIR_ARTIFACT, PYFUNC_CODE
    from mmops.params_file import load_params
    from mmops.registry.lineage import pip_requirements

    root = tmp / "logmodel"
    overrides = [f"paths.{k}={root / k}" for k in ("reports", "features", "model", "metrics", "cache")]
    params = load_params(None, overrides + SMALL)
    paths = Catalog.from_paths(params.paths, data=data_dir)
    stages.validate(params, paths)
    stages.preprocess(params, paths)
    model_dir = stages.train(params, paths)
    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'logmodel.db'}")
    mlflow.set_experiment("bench")
    times = []
    for _ in range(repeats):
        with mlflow.start_run():
            start = time.perf_counter()
            mlflow.pyfunc.log_model(
                name="model", python_model=str(PYFUNC_CODE), artifacts={MODEL_DIR_ARTIFACT: str(model_dir)},
                code_paths=[str(Path(mmops.__file__).parent)], pip_requirements=pip_requirements(),
            )
            times.append(time.perf_counter() - start)
    size_mb = sum(p.stat().st_size for p in Path(model_dir).rglob("*") if p.is_file()) / 1e6
    record(BENCH, "mlflow pyfunc log_model", statistics.median(times), "s", "<= 1",
           f"median of {repeats}, model folder {size_mb:.1f} MB, sqlite store")


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=120, help="demo samples for the DVC and log_model parts")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from mmops.data.avdigits import generate
    from mmops.params_file import load_params

    with tempfile.TemporaryDirectory(prefix="mmops-bench-pipeline-") as tmp_name:
        tmp = Path(tmp_name)
        data = tmp / "data"
        generate(data, load_params(None, [f"demo.n_samples={args.samples}"]).demo, [str(d) for d in range(10)])
        bench_log_model(tmp, data, args.repeats)
        bench_dvc(tmp, args.samples, args.repeats)


if __name__ == "__main__":
    main()
