"""Windows over long log-mel clips: random in training, all pooled at inference; the demo is untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmops.config import FeaturesConfig
from mmops.models import MultimodalClassifier
from mmops.models.classifier import with_frozen_embeddings
from mmops.models.windows import encode_clip, random_windows, window_starts
from mmops.params_file import load_params

W = 50


def _ramp(b: int, total: int = 251) -> torch.Tensor:
    """(b, 1, 4, total): every frame holds its own index."""
    return torch.arange(total, dtype=torch.float32).expand(b, 1, 4, total).clone()


def test_training_windows_lie_inside_the_signal_and_follow_the_seed():
    frames = torch.tensor([251, 120, 30, 50])
    torch.manual_seed(0)
    first = random_windows(_ramp(4), frames, W)
    assert first.shape == (4, 1, 4, W)
    starts = first[:, 0, 0, 0].long()
    assert torch.all(starts + W <= frames.clamp(min=W)) and starts[2] == 0 and starts[3] == 0
    assert torch.all(first[:, 0, 0] == starts[:, None] + torch.arange(W))  # contiguous frames
    seen = {int(random_windows(_ramp(1), torch.tensor([251]), W)[0, 0, 0, 0]) for _ in range(200)}
    assert min(seen) < 20 and max(seen) > 180  # anywhere in the clip
    torch.manual_seed(0)
    assert torch.equal(random_windows(_ramp(4), frames, W), first)


def test_inference_windows_cover_the_signal_with_half_overlap():
    starts, real = window_starts(torch.tensor([251, 120, 30, 0]), 251, W)
    assert starts[0][real[0]].tolist() == [0, 25, 50, 75, 100, 125, 150, 175, 200, 201]  # the last flush with the end
    assert starts[1][real[1]].tolist() == [0, 25, 50, 70]
    assert starts[2][real[2]].tolist() == [0] and starts[3][real[3]].tolist() == [0]


class CueDetector(nn.Module):
    """Responds to a cue (a value above 0.5) anywhere in its window: 1 if present, else 0."""

    out_dim = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.amax(dim=(1, 2, 3)) > 0.5).float()[:, None]


def _cue_clip(at: int, total: int = 251) -> dict:
    mel = torch.zeros(1, 1, 4, total)
    mel[..., at] = 1.0
    return {"mel": mel, "frames": torch.tensor([total])}


def test_pooled_windows_hear_a_late_cue_as_well_as_an_early_one():
    detector = CueDetector()
    early, late = (encode_clip(detector, _cue_clip(at), W, training=False) for at in (30, 180))
    assert torch.equal(early, late) and early.item() == pytest.approx(2 / 10)  # in 2 of the 10 windows
    first_window_only = detector(_cue_clip(180)["mel"][..., :W])
    assert first_window_only.item() == 0.0  # what a first-1-second pipeline would see
    assert encode_clip(detector, _cue_clip(240), W, training=False).item() > 0  # the very end counts too


def _audio_model(tiny_text_model, features: FeaturesConfig) -> MultimodalClassifier:
    params = load_params(None, [f"model.text.options.pretrained={tiny_text_model}", "model.width=16",
                                "model.modalities=[audio]"])
    torch.manual_seed(0)
    return MultimodalClassifier(params.model, 3, features=features)


def _record(model) -> list[torch.Tensor]:
    seen = []
    model.encoders["audio"].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    return seen


def test_classifier_windows_long_clips(tiny_text_model):
    features = FeaturesConfig(audio={"max_seconds": 1.0, "max_clip_seconds": 4.0})
    model = _audio_model(tiny_text_model, features)
    assert model.window_frames == 63
    seen = _record(model)
    batch = {"audio": {"mel": torch.randn(3, 1, 40, 251), "frames": torch.tensor([251, 100, 40])},
             "present": {"audio": torch.ones(3, dtype=torch.bool)}}
    model.train()
    assert model(batch).shape == (3, 3)
    assert seen[-1].shape == (3, 1, 40, 63)
    model.eval()
    with torch.no_grad():
        logits = model(batch)
    n_windows = sum(len(s[r]) for s, r in zip(*window_starts(batch["audio"]["frames"], 251, 63)))
    assert seen[-1].shape == (n_windows, 1, 40, 63) and logits.shape == (3, 3)


def test_demo_clip_goes_to_the_encoder_whole(tiny_text_model):
    """clip == window (the demo): one window, no random crop, no draw from the RNG."""
    model = _audio_model(tiny_text_model, FeaturesConfig())
    seen = _record(model)
    mel = torch.randn(4, 1, 40, 94)
    batch = {"audio": {"mel": mel, "frames": torch.tensor([94, 60, 94, 10])},
             "present": {"audio": torch.ones(4, dtype=torch.bool)}}
    for train in (True, False):
        model.train(train)
        state = torch.get_rng_state()
        model.encoders["audio"].eval()  # no dropout: the RNG must be untouched by windowing
        model.head.eval()
        model(batch)
        assert torch.equal(torch.get_rng_state(), state)
        assert torch.equal(seen[-1], mel)


def test_frozen_log_mel_encoder_embeds_pooled_windows(tiny_text_model, tmp_path):
    features = FeaturesConfig(audio={"max_seconds": 1.0, "max_clip_seconds": 4.0})
    model = _audio_model(tiny_text_model, features)
    model.encoders["audio"].frozen = True
    data = {"audio": {"mel": torch.randn(5, 1, 40, 251), "frames": torch.tensor([251, 200, 63, 10, 150])},
            "present": {"audio": torch.ones(5, dtype=torch.bool)}}
    embedded = with_frozen_embeddings(model, data, batch_size=2)["audio"]["embedding"]
    model.eval()
    with torch.no_grad():
        assert torch.allclose(embedded, model.encode("audio", data["audio"]), atol=1e-5)
    other = _audio_model(tiny_text_model, FeaturesConfig(audio={"max_seconds": 2.0, "max_clip_seconds": 4.0}))
    other.load_state_dict(model.state_dict())
    other.encoders["audio"].frozen = True
    again = with_frozen_embeddings(other, data, batch_size=2)["audio"]["embedding"]
    assert not torch.allclose(again, embedded)  # another window, another output (so the cache key has the window)
