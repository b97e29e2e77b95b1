"""`last.pt` every epoch, and `train(..., resume=True)` after a real SIGKILL reaching the same
weights as an uninterrupted seeded run (CPU). Also: LR schedule, clipping and augmentation."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch
import yaml

from mmops.catalog import CHECKPOINT, HISTORY_JSON, RESUME_STATE, Catalog
from mmops.params_file import load_params
from mmops.train.recipe import lr_lambda

EPOCHS = 3
SCRIPT = (
    "import sys; from dataclasses import replace; from pathlib import Path; from mmops.catalog import Catalog; "
    "from mmops.params_file import load_params; from mmops.train.recipe import train; "
    "params = load_params(sys.argv[2]); "
    "train(params, replace(Catalog.from_paths(params.paths), model=Path(sys.argv[1])), resume=sys.argv[3] == '1')"
)


@pytest.fixture
def params_file(prepared, tmp_path):
    raw = prepared.dump()
    raw["train"].update(
        epochs=EPOCHS, patience=100, device="cpu", grad_clip=0.5, schedule="cosine", warmup_epochs=1,
        augment={"specaugment": {"time_mask": 8, "freq_mask": 4, "n_masks": 1}, "image_jitter": {"max_shift": 0.1}},
    )
    raw["model"]["modality_dropout"] = 0.2  # every RNG the loop draws from is exercised
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _start(prepared, out, params_file, resume=False):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    argv = [sys.executable, "-c", SCRIPT, str(out), str(params_file), "1" if resume else "0"]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc):
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    return out


def _last(out):
    return torch.load(out / RESUME_STATE, weights_only=False)


def test_resume_after_sigkill_matches_uninterrupted_run(prepared, params_file, tmp_path):
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    run_a = _start(prepared, a_dir, params_file)
    run_b = _start(prepared, b_dir, params_file)

    # kill B for real once it has finished an epoch (but not the whole run)
    deadline = time.monotonic() + 240
    killed_after = None
    while time.monotonic() < deadline and run_b.poll() is None:
        if (b_dir / RESUME_STATE).exists():
            try:
                killed_after = _last(b_dir)["epoch"]
            except Exception:  # noqa: BLE001  (a torch.save in flight is never visible: atomic replace)
                continue
            if killed_after >= 1:
                os.kill(run_b.pid, signal.SIGKILL)
                break
        time.sleep(0.02)
    run_b.wait(timeout=60)
    assert run_b.returncode == -signal.SIGKILL, "B ended before it could be killed"
    assert killed_after is not None and killed_after < EPOCHS
    assert not (b_dir / HISTORY_JSON).exists()
    _finish(run_a)

    log = _finish(_start(prepared, b_dir, params_file, resume=True))
    assert "resumed from" in log

    a, b = _last(a_dir), _last(b_dir)
    assert a["epoch"] == b["epoch"] == EPOCHS
    assert a["state_dict"].keys() == b["state_dict"].keys()
    different = [k for k in a["state_dict"] if not torch.equal(a["state_dict"][k], b["state_dict"][k])]
    assert not different, f"resumed weights differ (killed after epoch {killed_after}): {different[:5]}"
    strip = lambda h: [{k: v for k, v in row.items() if k != "seconds"} for row in h]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"])
    summary_a = json.loads((a_dir / HISTORY_JSON).read_text())["summary"]
    summary_b = json.loads((b_dir / HISTORY_JSON).read_text())["summary"]
    assert summary_a == summary_b
    # the best checkpoint is the same too
    ca = torch.load(a_dir / CHECKPOINT, weights_only=True)["state_dict"]
    cb = torch.load(b_dir / CHECKPOINT, weights_only=True)["state_dict"]
    assert all(torch.equal(ca[k], cb[k]) for k in ca)


def test_resume_of_finished_run_is_a_no_op(prepared, tmp_path):
    from mmops.train.recipe import train

    params = prepared.model_copy(update={"train": prepared.train.model_copy(update={"epochs": 1, "device": "cpu"})})
    paths = replace(Catalog.from_paths(params.paths), model=tmp_path / "m")
    out = train(params, paths)
    before = _last(out)["state_dict"]
    train(params, paths, resume=True)
    after = _last(out)
    assert after["epoch"] == 1
    assert all(torch.equal(before[k], after["state_dict"][k]) for k in before)
    assert len(json.loads((out / HISTORY_JSON).read_text())["epochs"]) == 1


def test_lr_schedule_warmup_then_cosine():
    f = lr_lambda(steps_per_epoch=10, epochs=5, warmup_epochs=1, schedule="cosine")
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(30) == pytest.approx(0.5)
    assert f(49) < 0.01
    g = lr_lambda(10, 5, 0, "none")
    assert all(g(s) == 1.0 for s in range(50))


def test_train_config_knobs_validate():
    params = load_params(None, ["train.grad_clip=1.0", "train.schedule=cosine", "train.compile=false",
                                "train.augment.image_jitter.max_shift=0.2"])
    assert params.train.grad_clip == 1.0 and params.train.augment.image_jitter.max_shift == 0.2
    from mmops.config import ConfigError

    with pytest.raises(ConfigError):
        load_params(None, ["train.schedule=step"])
    with pytest.raises(ConfigError):
        load_params(None, ["train.augment.mixup=1"])
