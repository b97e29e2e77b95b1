"""What the trainer moved off its training thread still does what it did on it: batches read ahead
are the loader's own, files written behind hold the state at the moment of the save (whatever
training does meanwhile) and land in order, a failed write is raised, the frozen-tensor check
against the pretrained file is redone as soon as a frozen tensor is written; and the per-epoch
metrics equal scikit-learn's."""

import threading
from dataclasses import replace

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score

from datagen.unlike_demo import make_dataset
from mmops import stages
from mmops.catalog import CHECKPOINT, Catalog
from mmops.params_file import load_params
from mmops.train.background import ReadAhead, WriteBehind
from mmops.train.recipe import TrainRecipe, accuracy_and_macro_f1
from pipeline_overrides import overrides_for


def test_metrics_equal_sklearn_to_the_bit():
    g = torch.Generator().manual_seed(0)
    cases = [(torch.randint(0, k, (n,), generator=g), torch.randint(0, k, (n,), generator=g))
             for n, k in ((1, 1), (7, 3), (64, 10), (200, 13), (33, 40))]
    labels = torch.randint(0, 10, (50,), generator=g)
    cases += [
        (labels, labels.clone()),  # all right
        (labels, torch.full_like(labels, 3)),  # one class predicted
        (labels % 4, (labels % 4 + 5)),  # predictions only of classes absent from the labels
        (torch.tensor([0, 0, 9, 9, 9]), torch.tensor([0, 9, 9, 2, 0])),  # classes 1..8 absent, 2 only predicted
    ]
    for y, p in cases:
        accuracy, macro_f1 = accuracy_and_macro_f1(y, p)
        assert accuracy == float(accuracy_score(y, p))
        assert macro_f1 == float(f1_score(y, p, average="macro", zero_division=0))


def test_read_ahead_yields_the_loaders_items_in_order_every_time():
    class Loader:
        def __init__(self):
            self.threads = set()

        def __iter__(self):
            for i in range(5):
                self.threads.add(threading.current_thread().name)
                yield {"i": torch.tensor([i])}, i

    loader = Loader()
    ahead = ReadAhead(loader)
    for _ in range(3):  # one helper for the whole run: each epoch starts a fresh iterator
        assert [(b["i"].item(), i) for b, i in ahead] == [(i, i) for i in range(5)]
    assert all(name.startswith("mmops-read-ahead") for name in loader.threads)
    first = iter(ahead)
    next(first)
    first.close()  # a loop that stops early (an error in a step) leaves nothing blocked
    assert [i for _, i in ahead] == list(range(5))
    ahead.close()


def test_read_ahead_raises_the_loaders_error_in_the_consuming_loop():
    def broken():
        yield 1
        raise OSError("truncated shard")

    class Loader:
        def __iter__(self):
            return broken()

    got = []
    with pytest.raises(OSError, match="truncated shard"):
        got.extend(ReadAhead(Loader()))
    assert got == [1]


def test_write_behind_runs_in_order_and_raises_a_failed_write():
    writer, done, gate = WriteBehind(), [], threading.Event()
    writer.submit(gate.wait)
    for i in range(4):
        writer.submit(done.append, i)
    assert done == []  # queued behind the first job, not run on the caller's thread
    gate.set()
    writer.wait()
    assert done == [0, 1, 2, 3]

    def fail():
        raise OSError("disk full")

    writer.submit(fail)
    with pytest.raises(OSError, match="disk full"):
        writer.wait()
    writer.submit(fail)
    writer._pending[-1].exception()  # let it finish
    with pytest.raises(OSError, match="disk full"):
        writer.submit(done.append, 5)  # the next save raises it: training stops there
    writer.close()


@pytest.fixture(scope="module")
def shapes(tmp_path_factory, tiny_text_model):
    """A tiny text + image dataset with string labels (no audio), validated and featurized; the
    text encoder is the frozen tiny BERT, so checkpoints reference its file (base_weights.json)."""
    root = tmp_path_factory.mktemp("shapes-bg")
    make_dataset(root / "data", n_per_class=10, classes=("cat", "dog", "eel"), variant="no_audio", p_uninformative=0.0)
    extra = {"train.epochs": 2, "train.patience": 100, "train.device": "cpu", "train.batch_size": 8}
    params = load_params(None, overrides_for(root, tiny_text_model, **extra))
    paths = Catalog.from_paths(params.paths)
    stages.validate(params, paths)
    stages.preprocess(params, paths)
    return stages.resolved(params, paths), paths


def test_saved_files_hold_the_state_at_the_save_not_later(shapes, tmp_path):
    params, base = shapes
    recipe = TrainRecipe(params, replace(base, model=tmp_path / "m"))
    recipe.setup()
    recipe._train_one_epoch(1)
    trained = recipe.snapshot()
    gate = threading.Event()
    recipe.writer.submit(gate.wait)  # hold the writer: both files below are written after training moved on
    recipe.save_checkpoint(1, {"macro_f1": 0.5}, trained)
    recipe.save_last(1, trained)  # returns once the snapshot is taken
    trained = {k: v.clone() for k, v in recipe.model.state_dict().items() if k not in recipe.frozen}
    first = next(iter(recipe.optimizer.state_dict()["state"]))
    moments = {k: v.clone() for k, v in recipe.optimizer.state_dict()["state"][first].items()}
    recipe._train_one_epoch(2)  # changes every trainable tensor and the optimizer moments in place
    assert not torch.equal(recipe.optimizer.state_dict()["state"][first]["exp_avg"], moments["exp_avg"])
    gate.set()
    recipe.writer.close()

    checkpoint = torch.load(recipe.paths.model / CHECKPOINT, weights_only=True)
    last = torch.load(recipe.paths.resume_state, weights_only=True)
    assert checkpoint["epoch"] == last["epoch"] == 1
    for state in (checkpoint["state_dict"], last["state_dict"]):
        assert all(torch.equal(state[k], v) for k, v in trained.items())
    assert all(torch.equal(last["optimizer"]["state"][first][k], v) for k, v in moments.items())
    assert not set(checkpoint["state_dict"]) & recipe.frozen  # the frozen BERT: referenced, not stored


def test_frozen_tensors_are_compared_with_their_file_again_once_written(shapes, tmp_path, monkeypatch):
    import mmops.train.recipe as recipe_module

    params, base = shapes
    recipe = TrainRecipe(params, replace(base, model=tmp_path / "m"))
    recipe.setup()
    compared = []
    real = recipe_module.lean_checkpoint
    monkeypatch.setattr(recipe_module, "lean_checkpoint", lambda *a: compared.append(1) or real(*a))

    first, bases = recipe._lean(recipe.model.state_dict())
    dropped = set(recipe.model.state_dict()) - set(first)
    assert dropped and dropped <= recipe.frozen and bases
    again, bases_again = recipe._lean(recipe.model.state_dict())
    assert len(compared) == 1 and list(again) == list(first) and bases_again == bases  # not read again

    frozen = dict(recipe.model.named_parameters())[min(dropped)]
    with torch.no_grad():
        frozen.mul_(1.0)  # written, same values: compared again, still left out
    assert list(recipe._lean(recipe.model.state_dict())[0]) == list(first) and len(compared) == 2
    with torch.no_grad():
        frozen.add_(1.0)  # written, other values: compared again, and now stored in the checkpoint
    changed, _ = recipe._lean(recipe.model.state_dict())
    assert len(compared) == 3 and min(dropped) in changed
    assert np.allclose(changed[min(dropped)].numpy(), frozen.detach().numpy())
