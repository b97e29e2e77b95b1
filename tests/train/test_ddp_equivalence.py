"""DDP equivalence: `torchrun --nproc_per_node=2` (gloo, CPU) with the global batch split across
ranks takes the same optimizer steps as one process with the whole batch."""

import os
import socket
import subprocess
import sys

import pytest
import torch
import yaml

from mmops.catalog import resume_state_file

SCRIPT = """
import sys
from dataclasses import replace
from pathlib import Path
from mmops.catalog import Catalog
from mmops.params_file import load_params
from mmops.train.recipe import train
params = load_params(sys.argv[2])
train(params, replace(Catalog.from_paths(params.paths), model=Path(sys.argv[1])))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_match_one_process(prepared, tmp_path):
    raw = prepared.dump()
    raw["train"].update(epochs=2, batch_size=16, patience=100, device="cpu", grad_clip=1.0, schedule="cosine")
    # no per-process randomness (dropout draws differ between ranks and the single process)
    raw["model"]["head"]["dropout"] = 0.0
    raw["model"]["image"]["options"]["dropout"] = 0.0
    raw["model"]["audio"]["options"]["dropout"] = 0.0
    raw["model"]["modality_dropout"] = 0.0
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT)
    args = [str(script), None, str(params_file)]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"

    one = tmp_path / "one"
    ddp = tmp_path / "ddp"
    single = subprocess.Popen([sys.executable, *[str(one) if a is None else a for a in args]], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    torchrun = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
         f"--master_port={_free_port()}", *[str(ddp) if a is None else a for a in args]],
        env=env, capture_output=True, text=True, timeout=300,
    )
    out, _ = single.communicate(timeout=300)
    assert single.returncode == 0, out[-3000:]
    assert torchrun.returncode == 0, torchrun.stdout[-3000:] + torchrun.stderr[-3000:]

    a = torch.load(resume_state_file(one), weights_only=False)
    b = torch.load(resume_state_file(ddp), weights_only=False)
    assert a["epoch"] == b["epoch"] == 2
    keys = list(a["state_dict"])
    flat_a = torch.cat([a["state_dict"][k].float().flatten() for k in keys])
    flat_b = torch.cat([b["state_dict"][k].float().flatten() for k in keys])
    worst = (flat_a - flat_b).abs().max().item()
    relative = ((flat_a - flat_b).norm() / flat_a.norm()).item()
    print(f"DDP vs one process: relative L2 {relative:.2e}, worst element {worst:.2e}")
    # float summation order differs (gloo all-reduce of two half-batch gradients) and Adam's
    # normalisation amplifies that noise in the odd weight whose gradient is near zero, so single
    # elements drift (observed up to 5e-4, so counting drifting tensors was flaky); the weights as
    # a whole agree to ~1e-6.
    assert relative < 1e-4, relative
    assert worst < 2e-3, worst
    for row_a, row_b in zip(a["history"], b["history"]):
        assert row_a["val_loss"] == pytest.approx(row_b["val_loss"], abs=1e-4)
        assert row_a["val_accuracy"] == row_b["val_accuracy"]

