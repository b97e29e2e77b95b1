"""Screenshot of a drift report for the README: `python scripts/screenshot_monitor.py [--out docs]`.

Trains params.yaml's model on a small generated avdigits set and registers it into a temporary
SQLite MLflow store (`train_and_register` of screenshot_mlflow.py; the training reference is saved
with it), serves the champion
in-process with the prediction log on, sends in-domain traffic (val + test) and then traffic from
`test_shifted`, each with feedback labels, runs `mmops monitor` on each window and takes a headless
Chromium screenshot of the second report.

Needs Chromium (Debian: `apt-get install chromium`); a README helper, not a test (CI has no browser;
tests/orchestrate/test_monitor.py checks the same path end to end).
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROWS = 200  # per window: enough for the statistics, seconds to send


def traffic(dataset: Path, splits: set[str]):
    import pandas as pd

    df = pd.read_csv(dataset / "manifest.csv", dtype=str, keep_default_na=False)
    rows = df[df["split"].isin(splits)].head(ROWS)
    for column in ("image", "audio"):
        rows[column] = [str(dataset / p) if p else "" for p in rows[column]]
    return rows


def send(client, rows) -> float:
    """/predict in requests of 16, then the true labels to /feedback; the accuracy of the answers."""
    right = 0
    for start in range(0, len(rows), 16):
        chunk = rows.iloc[start:start + 16]
        instances = [{k: (base64.b64encode(Path(r[k]).read_bytes()).decode() if k != "text" else r[k])
                      for k in ("text", "image", "audio") if r[k]} for r in chunk.to_dict("records")]
        predictions = client.post("/predict", json={"instances": instances}).json()["predictions"]
        right += sum(p["label"] == label for p, label in zip(predictions, chunk["label"]))
        client.post("/feedback", json={"feedback": [{"request_id": p["request_id"], "label": label}
                                                    for p, label in zip(predictions, chunk["label"])]})
    client.app.state.serve["log"].flush(timeout=60)
    return right / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mmops-monitor-shot-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    os.environ["PREFECT_HOME"] = str(root / "prefect")
    os.chdir(REPO)

    from fastapi.testclient import TestClient

    from mmops.config.monitor import PredictionLogConfig
    from mmops.orchestrate.monitor import run_monitor
    from mmops.params_file import load_params
    from mmops.serve.app import create_app
    from mmops.serve.reloader import RegistrySource
    from mmops.serve.settings import ServeSettings

    sys.path.insert(0, str(REPO / "scripts"))
    from screenshot_mlflow import train_and_register

    name, _ = train_and_register(root)
    log_dir = root / "predictions"
    params = load_params(REPO / "params.yaml", [f"monitor.log.dir={log_dir}", f"registry.model_name={name}",
                                                  "monitor.drift.min_rows=30"])
    data = root / "data"

    settings = ServeSettings(poll_interval_s=0, token="", prediction_log=PredictionLogConfig(dir=str(log_dir)))
    with TestClient(create_app(settings, RegistrySource(params.registry.model_name))) as client:
        for window, splits in (("in-domain", {"val", "test"}), ("shifted", {"test_shifted"})):
            rows = traffic(data, splits)
            accuracy = send(client, rows)
            doc = run_monitor(params, root / window, last=len(rows))
            drifted = [m for m, d in doc["modalities"].items() if d["drifted"]]
            print(f"{window} ({len(rows)} rows): live accuracy {accuracy:.3f}, drifted {drifted or 'nothing'}, triggered {doc['triggered']}")

    args.out.mkdir(parents=True, exist_ok=True)
    shot = args.out / "drift-report.png"
    html = root / "shifted" / "drift.html"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={shot}", "--window-size=1300,1500", html.as_uri()], check=True, timeout=120,
                   capture_output=True)
    print(f"wrote {shot} ({shot.stat().st_size // 1000} kB) from {html}")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
