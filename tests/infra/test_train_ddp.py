"""The training Job's command (infra/commands.yaml `train-ddp`) run natively: torchrun with two
processes (DDP over gloo on CPU; NCCL on the GPUs of the Kubernetes Job) on the small dataset.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml

from infra_commands import render
from servers import BIN, free_port

pytestmark = pytest.mark.slow


def test_train_ddp_command_trains_under_torchrun(prepared, tmp_path):
    params = prepared.dump()
    params["paths"]["model"] = str(tmp_path / "model")
    params["train"]["device"] = "cpu"
    params["train"]["epochs"] = 2
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))

    argv = render("train-ddp", gpus=2, params=params_file)
    # torchrun reads unset options from PET_* variables: a free rendezvous port, same argv.
    logs = tmp_path / "torchrun-logs"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PET_MASTER_PORT": str(free_port()),
           "PET_LOG_DIR": str(logs), "PET_REDIRECTS": "3"}
    done = subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    ranks = {p.parent.name for p in logs.rglob("stdout.log")}
    assert ranks == {"0", "1"}, f"torchrun started ranks {ranks}"
    history = json.loads((tmp_path / "model" / "history.json").read_text())
    assert history["summary"]["epochs_run"] == 2
    assert any(p.suffix in (".pt", ".pth") for p in (tmp_path / "model").iterdir()), "rank 0 wrote the checkpoint"
