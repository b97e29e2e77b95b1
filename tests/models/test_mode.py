"""Mode switches on the serving path walk the module tree only when the mode changes."""

import pytest
import torch
from torch import nn

from mmops.inference.predict import predict_logits
from mmops.models import MultimodalClassifier
from mmops.models.classifier import with_frozen_embeddings
from mmops.models.mode import ensure_eval, set_training
from mmops.params_file import load_params


def _count_train_calls(model: nn.Module) -> list[str]:
    """Record every submodule `train()` call (each eval()/train() on an ancestor makes one per module)."""
    calls: list[str] = []
    for name, module in model.named_modules():
        original = module.train

        def spy(mode=True, _original=original, _name=name):
            calls.append(_name)
            return _original(mode)

        module.train = spy
    return calls


def test_ensure_eval_walks_only_when_something_changes():
    net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.Sequential(nn.Dropout(0.5)))
    calls = _count_train_calls(net)
    assert ensure_eval(net) is net and not any(m.training for m in net.modules())
    walked = len(calls)
    assert walked >= 5
    ensure_eval(net)
    set_training(net, False)
    assert len(calls) == walked  # already eval: no walk
    set_training(net, True)
    assert all(m.training for m in net.modules()) and len(calls) == 2 * walked


@pytest.fixture
def frozen_text_model(tiny_text_model):
    params = load_params(None, [f"model.text.options.pretrained={tiny_text_model}", "model.width=16"])
    torch.manual_seed(0)
    return MultimodalClassifier(params.model, 4)


def _batch(n=3, seq=6):
    return {
        "text": {"input_ids": torch.randint(1, 40, (n, seq)), "attention_mask": torch.ones(n, seq, dtype=torch.long)},
        "image": torch.randn(n, 1, 16, 16),
        "audio": torch.randn(n, 1, 48, 50),
        "present": {m: torch.ones(n, dtype=torch.bool) for m in ("text", "image", "audio")},
    }


def test_a_served_model_in_eval_mode_is_never_walked_again(frozen_text_model):
    model = frozen_text_model.eval()
    assert model.encoders["text"].frozen
    first = predict_logits(model, _batch(), torch.device("cpu"), 8)
    calls = _count_train_calls(model)
    again = predict_logits(model, _batch(), torch.device("cpu"), 8)
    assert calls == [] and first.shape == again.shape == (3, 4)


def test_frozen_embeddings_leave_a_training_model_training_and_run_the_backbone_in_eval(frozen_text_model):
    batch = _batch()
    model = frozen_text_model.train()
    in_training = with_frozen_embeddings(model, batch, 8)["text"]["embedding"]
    assert all(m.training for m in model.encoders["text"].modules())  # as it was before the call
    in_eval = with_frozen_embeddings(model.eval(), batch, 8)["text"]["embedding"]
    assert not any(m.training for m in model.modules())
    torch.testing.assert_close(in_training, in_eval, rtol=0, atol=0)  # dropout off in both: the cache is valid


def test_a_frozen_backbone_runs_in_eval_inside_a_training_model(frozen_text_model):
    text = _batch()["text"]
    model = frozen_text_model.train()
    with torch.no_grad():
        in_training = model.embed("text", text)
        assert model.training and not model.encoders["text"].backbone.training
        in_eval = frozen_text_model.eval().embed("text", text)
    torch.testing.assert_close(in_training, in_eval, rtol=0, atol=0)
