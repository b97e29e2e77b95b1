"""`last.pt` every epoch, and `train(..., resume=True)` after a real SIGKILL reaching the same
weights as an uninterrupted seeded run (CPU); a `last.pt` written for other params or features is
refused and removed; a kill in the middle of a checkpoint write leaves no torn file. Also: LR
schedule, clipping and augmentation."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch
import yaml

from datagen.unlike_demo import make_dataset
from mmops import stages
from mmops.catalog import BASE_WEIGHTS, CHECKPOINT, HISTORY_JSON, Catalog, resume_state_file
from mmops.params_file import load_params
from mmops.train.recipe import TrainRecipe, lr_lambda
from mmops.features.shards import SplitView, write_index, write_shard
from pipeline_overrides import overrides_for

EPOCHS = 3
TEAR_SAVE = (
    "import io, os, signal, torch; real_save = torch.save; calls = [0]\n"
    "def torn_save(obj, f, *a, **k):\n"
    "    calls[0] += 1\n"
    "    if calls[0] == %d:\n"
    "        buf = io.BytesIO(); real_save(obj, buf)\n"
    "        with open(f, 'wb') as fh: fh.write(buf.getvalue()[: buf.tell() // 2]); fh.flush(); os.fsync(fh.fileno())\n"
    "        os.kill(os.getpid(), signal.SIGKILL)\n"
    "    return real_save(obj, f, *a, **k)\n"
    "torch.save = torn_save\n"
)
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


def _start(prepared, out, params_file, resume=False, tear_save=0):
    """`train` in a subprocess; `tear_save=N`: its N-th `torch.save` writes half the bytes, then SIGKILLs."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    script = (TEAR_SAVE % tear_save if tear_save else "") + SCRIPT
    argv = [sys.executable, "-c", script, str(out), str(params_file), "1" if resume else "0"]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc):
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    return out


def _last(out):
    return torch.load(resume_state_file(out), weights_only=True)


def test_resume_after_sigkill_matches_uninterrupted_run(prepared, params_file, tmp_path):
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    run_a = _start(prepared, a_dir, params_file)
    run_b = _start(prepared, b_dir, params_file)

    # kill B for real once it has finished an epoch (but not the whole run)
    deadline = time.monotonic() + 240
    killed_after = None
    while time.monotonic() < deadline and run_b.poll() is None:
        if resume_state_file(b_dir).exists():
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


# -- a resume state is only trusted by the run it was written for ---------------------------------


@pytest.fixture(scope="module")
def shapes(tmp_path_factory, tiny_text_model):
    """A tiny two-modality (text + image) dataset with string labels, validated and featurized."""
    root = tmp_path_factory.mktemp("shapes")
    make_dataset(root / "data", n_per_class=12, classes=("cat", "dog"), variant="no_audio", p_uninformative=0.0)
    extra = {"train.epochs": 2, "train.patience": 100, "train.device": "cpu", "train.batch_size": 8}
    params = load_params(None, overrides_for(root, tiny_text_model, **extra))
    paths = Catalog.from_paths(params.paths)
    stages.validate(params, paths)
    stages.preprocess(params, paths)
    return stages.resolved(params, paths), paths


def _setup(params, paths, resume=True):
    recipe = TrainRecipe(params, paths, resume=resume)
    recipe.setup()
    return recipe


def _weights(model_dir):
    return torch.load(model_dir / CHECKPOINT, weights_only=True)["state_dict"]


def test_resume_state_of_other_params_or_features_is_refused_and_removed(shapes, tmp_path, capfd):
    from mmops.train.recipe import train

    params, base = shapes
    paths = replace(base, model=tmp_path / "m")
    train(params, paths)  # run A leaves its last.pt (finished: a resume would be a no-op)
    assert _setup(params, paths).start_epoch == params.train.epochs + 1  # same params + data: resumed

    other = params.model_copy(update={"train": params.train.model_copy(update={"lr": params.train.lr / 2})})
    recipe = _setup(other, paths)
    assert recipe.start_epoch == 1 and recipe.history == []
    assert not paths.resume_state.exists()
    assert f"{paths.resume_state} refused and removed: written for other params or features" in capfd.readouterr().err

    # other features (one label flipped), same params: refused too
    train(params, paths)
    features = tmp_path / "features"
    shutil.copytree(base.features, features)
    view = SplitView(features / "train")
    entries = view.index["shards"]
    shard = view.shard(0)
    shard["labels"][0] = 1 - shard["labels"][0]
    entries[0] = {**write_shard(view.shard_files[0], shard), "sample_ids": entries[0]["sample_ids"]}
    write_index(features / "train", entries)
    assert _setup(params, replace(paths, features=features)).start_epoch == 1
    assert not paths.resume_state.exists()

    # the retry trains from scratch: exactly the weights of a fresh run with the new params
    train(params, paths)
    train(other, paths, resume=True)
    train(other, replace(paths, model=tmp_path / "fresh"))
    resumed, fresh = _weights(paths.model), _weights(tmp_path / "fresh")
    assert all(torch.equal(resumed[k], fresh[k]) for k in fresh)


def test_unreadable_or_pickled_resume_state_is_refused(shapes, tmp_path, capfd):
    params, base = shapes
    paths = replace(base, model=tmp_path / "m")
    paths.model.mkdir()
    paths.resume_state.parent.mkdir()
    for content, why in ((b"PK\x03\x04 torn", "unreadable"), (None, "unreadable (UnpicklingError)")):
        if content is None:  # a pickle that runs code on load (weights_only=False would execute it)
            torch.save({"fingerprint": object()}, paths.resume_state)
        else:
            paths.resume_state.write_bytes(content)
        assert _setup(params, paths).start_epoch == 1
        assert not paths.resume_state.exists()
        assert why in capfd.readouterr().err


def test_kill_in_the_middle_of_a_checkpoint_write_leaves_no_torn_file(shapes, tmp_path, capfd):
    from mmops.train.recipe import train

    params, base = shapes
    params = params.model_copy(update={"train": params.train.model_copy(update={"epochs": 3})})
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params.dump()))
    out = tmp_path / "m"
    # saves: checkpoint (epoch 1), last (epoch 1), then the third is torn by a SIGKILL halfway
    killed = _start(None, out, params_file, tear_save=3)
    killed.communicate(timeout=300)
    assert killed.returncode == -signal.SIGKILL
    temps = [p.name for d in (out, resume_state_file(out).parent) for p in d.iterdir() if p.name.startswith(".")]
    assert len(temps) == 1 and ".tmp-" in temps[0]  # the torn bytes never reached a final name
    assert _last(out)["epoch"] == 1
    assert torch.load(out / CHECKPOINT, weights_only=True)["epoch"] == 1
    assert not (out / HISTORY_JSON).exists()

    capfd.readouterr()
    train(params, replace(base, model=out), resume=True)
    assert f"resumed from {resume_state_file(out)} after epoch 1" in capfd.readouterr().err
    # the model folder holds what serving needs; the resume state lives beside it, never registered
    # (the frozen tiny BERT is referenced by sha256 in base_weights.json, not stored)
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == [BASE_WEIGHTS, CHECKPOINT, HISTORY_JSON]
    assert resume_state_file(out).is_file()
    assert _last(out)["epoch"] == 3
    assert len(json.loads((out / HISTORY_JSON).read_text())["epochs"]) == 3


@pytest.mark.slow
def test_two_ranks_refuse_a_foreign_resume_state_together(shapes, tmp_path):
    """Under DDP every rank reads `last.pt` before rank 0 removes it: no rank hangs or diverges."""
    from mmops.train.recipe import train

    params, base = shapes
    out = tmp_path / "m"
    train(params, replace(base, model=out))
    other = params.model_copy(update={"train": params.train.model_copy(update={"lr": params.train.lr / 2})})
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(other.dump()))
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT.replace("; ", "\n"))
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
         f"--master_port={port}", str(script), str(out), str(params_file), "1"],
        env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300,
    )
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]
    assert log.count("refused and removed: written for other params or features") == 1 and "resumed from" not in log
    state = _last(out)
    assert state["epoch"] == other.train.epochs and len(state["history"]) == other.train.epochs
