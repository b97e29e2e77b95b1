"""Screenshots of the MLflow UI for the README: `python scripts/screenshot_mlflow.py [--out docs]`.

Starts a real `mlflow server` on 127.0.0.1 (SQLite store and artifacts in a temp folder), runs the
pipeline on a small generated avdigits set (params.yaml's model; fewer samples and epochs, and floors
lowered to match, so the small model can pass the gate), registers it twice (the second time a
changed model folder, gated against the first), then takes headless Chromium screenshots of the
registered model page and of the second version's page (model card, then the signature's schema).

Needs Chromium (Debian: `apt-get install chromium`); a README helper, not a test (CI has no browser).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SMALL_RUN = {  # a few minutes on two cores
    "demo.n_samples": 400, "train.epochs": 15, "gate.floors.accuracy": 0.5, "gate.floors.macro_f1": 0.5,
    "gate.floors.without_text.macro_f1": 0.3, "gate.floors.without_image.macro_f1": 0.3,
    "gate.floors.without_audio.macro_f1": 0.3, "gate.ceilings.ece": 0.3, "quantize.max_accuracy_drop": 0.05,
}
MAX_PNG_BYTES = 300_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_and_register(root: Path) -> tuple[str, str]:
    """The pipeline on generated data in `root`, registered twice into MLFLOW_TRACKING_URI; (model
    name, the second version: gated against the first)."""
    from mmops import stages
    from mmops.catalog import Catalog
    from mmops.params_file import load_params

    overrides = {f"paths.{k}": root / k for k in ("data", "reports", "features", "model", "metrics", "cache")}
    params = load_params(REPO / "params.yaml", [f"{k}={v}" for k, v in {**overrides, **SMALL_RUN}.items()])
    paths = Catalog.from_paths(params.paths)
    stages.demo_data(params, paths)
    stages.validate(params, paths)
    stages.preprocess(params, paths)
    stages.train(params, paths)
    stages.evaluate(params, paths)
    first = stages.register(params, paths)
    (paths.model / "NOTES.txt").write_text("the same weights, other content: a second version\n")
    second = stages.register(params, paths)
    print(f"registered v{first['version']} (promoted: {first['promoted']}) and v{second['version']} "
          f"(promoted: {second['promoted']})")
    return params.registry.model_name, second["version"]


def screenshot(url: str, out: Path, size: str) -> None:
    """A headless Chromium screenshot of `url` (a JS app: virtual time lets it fetch and render), as a
    palette PNG under MAX_PNG_BYTES."""
    from PIL import Image

    raw = out.with_suffix(".raw.png")
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--window-size={size}",
         "--virtual-time-budget=15000", f"--screenshot={raw}", url],
        check=True, capture_output=True, timeout=180,
    )
    with Image.open(raw) as image:
        small = image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    buffer = io.BytesIO()
    small.save(buffer, format="PNG", optimize=True)
    raw.unlink()
    if buffer.tell() > MAX_PNG_BYTES:
        raise SystemExit(f"{out}: {buffer.tell()} bytes, over {MAX_PNG_BYTES}; use a smaller --window-size")
    out.write_bytes(buffer.getvalue())
    print(f"{out}: {buffer.tell() / 1000:.0f} kB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="folder for the PNGs")
    args = parser.parse_args()
    if shutil.which("chromium") is None:
        raise SystemExit("chromium not found: apt-get install chromium (Debian), then run again")
    from mmops.processes import stop_group, wait_healthy

    with tempfile.TemporaryDirectory(prefix="mmops-screens-") as tmp:
        root = Path(tmp)
        port = free_port()
        uri = f"http://127.0.0.1:{port}"
        cmd = [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
               "--artifacts-destination", (root / "artifacts").as_uri(), "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1"]
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with open(root / "server.log", "w") as log:
            server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            wait_healthy(f"{uri}/health", server, 180, root / "server.log")
            os.environ["MLFLOW_TRACKING_URI"] = uri
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            name, version = train_and_register(root / "project")
            args.out.mkdir(parents=True, exist_ok=True)
            screenshot(f"{uri}/#/models/{name}", args.out / "mlflow-registered-model.png", "1400,1000")
            screenshot(f"{uri}/#/models/{name}/versions/{version}", args.out / "mlflow-version-card.png", "1400,2000")
        finally:
            stop_group(server, timeout=20)


if __name__ == "__main__":
    main()
