"""Modality dropout (training only) and config-driven augmentation."""

import pytest
import torch

from mmops.config import AugmentConfig, ImageJitterConfig, SpecAugmentConfig
from mmops.params_file import load_params
from mmops.models import MultimodalClassifier
from mmops.models.augment import augment_batch, image_jitter, mel_noise, spec_augment, spec_warp


def _batch(n=32):
    return {
        "text": {"input_ids": torch.randint(1, 40, (n, 8)), "attention_mask": torch.ones(n, 8, dtype=torch.long)},
        "image": torch.randn(n, 1, 16, 16),
        "audio": {"mel": torch.randn(n, 1, 40, 50), "frames": torch.full((n,), 50)},
        "present": {m: torch.ones(n, dtype=torch.bool) for m in ("text", "image", "audio")},
        "labels": torch.randint(0, 10, (n,)),
    }


def _model(tiny_text_model, dropout):
    params = load_params(None, [f"model.text.options.pretrained={tiny_text_model}", "model.width=16"])
    params = params.model_copy(update={"model": params.model.model_copy(update={"modality_dropout": dropout})})
    torch.manual_seed(0)
    return MultimodalClassifier(params.model, 10)


def _record_inputs(model):
    seen: dict[str, list[int]] = {m: [] for m in model.modalities}
    for m, enc in model.encoders.items():
        def hook(module, args, m=m):
            x = args[0]
            seen[m].append((x["input_ids"] if isinstance(x, dict) else x).shape[0])
        enc.register_forward_pre_hook(hook)
    return seen


def test_p1_on_one_modality_starves_its_encoder_in_training_only(tiny_text_model):
    model = _model(tiny_text_model, {"image": 1.0})
    seen = _record_inputs(model)
    model.train()
    model(_batch())
    assert seen["image"] == [] and seen["text"] == [32] and seen["audio"] == [32]
    model.eval()
    model(_batch())
    assert seen["image"] == [32]  # never at evaluation


def test_never_drops_all_modalities_of_a_sample(tiny_text_model):
    model = _model(tiny_text_model, 1.0)  # every modality dropped... but one must stay
    model.train()
    batch = _batch(64)
    batch["present"]["audio"][:16] = False  # some samples only have two modalities
    kept = model._drop_modalities(batch["present"])
    stacked = torch.stack([kept[m] for m in model.modalities], 1)
    assert (stacked.sum(1) == 1).all()
    assert not kept["audio"][:16].any()  # a missing modality is never "restored"
    torch.nn.functional.cross_entropy(model(batch), batch["labels"]).backward()


def test_dropout_rate_and_seeding(tiny_text_model):
    model = _model(tiny_text_model, 0.3)
    present = {m: torch.ones(4000, dtype=torch.bool) for m in model.modalities}
    torch.manual_seed(1)
    a = model._drop_modalities(present)
    torch.manual_seed(1)
    b = model._drop_modalities(present)
    assert all(torch.equal(a[m], b[m]) for m in model.modalities)
    rate = 1 - torch.stack([a[m] for m in model.modalities]).float().mean()
    assert 0.25 < rate < 0.33  # ~0.3, a little less: all-dropped samples get one back


def test_modality_dropout_config_is_validated():
    from mmops.config import ConfigError

    with pytest.raises(ConfigError, match="modality_dropout"):
        load_params(None, ["model.modality_dropout=1.5"])


def test_specaugment_masks_bands():
    torch.manual_seed(0)
    x = torch.randn(8, 1, 40, 50)
    y = spec_augment(x, SpecAugmentConfig(time_mask=10, freq_mask=6, n_masks=2))
    assert y.shape == x.shape
    assert not torch.equal(x, y)
    changed = (x != y).float().mean()
    assert 0 < changed < 0.6
    assert torch.equal(spec_augment(x, SpecAugmentConfig(time_mask=0, freq_mask=0, n_masks=2)), x)


def test_image_jitter_is_identity_at_zero_and_moves_pixels_otherwise():
    torch.manual_seed(0)
    x = torch.randn(4, 1, 16, 16)
    assert torch.allclose(image_jitter(x, ImageJitterConfig(max_shift=0, max_rotate_deg=0, max_scale=0)), x, atol=1e-5)
    y = image_jitter(x, ImageJitterConfig(max_shift=0.2, max_rotate_deg=20, max_scale=0.2))
    assert y.shape == x.shape and not torch.allclose(x, y)


def test_image_jitter_fills_uncovered_area_with_the_background():
    """Zooming out of a digit that touches the frame must not smear its edge into the border."""
    torch.manual_seed(0)
    x = torch.full((32, 1, 16, 16), -1.0)  # dark background
    x[..., :, 6:10] = 1.0  # a bright bar touching the top and bottom edges
    y = image_jitter(x, ImageJitterConfig(max_shift=0, max_rotate_deg=0, max_scale=0.5))
    dark_frame = (y[:, 0, 0, :].amax(1) < -0.99) & (y[:, 0, -1, :].amax(1) < -0.99)
    assert dark_frame.any()  # the zoomed-out bars no longer reach the frame (edge padding would smear them)
    assert y.min() >= -1.0 - 1e-5 and y.max() <= 1.0 + 1e-5


def test_spec_warp_is_identity_at_zero_and_stretches_otherwise():
    from mmops.config import SpecWarpConfig

    torch.manual_seed(0)
    x = torch.zeros(2, 1, 40, 60) - 5.0
    x[:, :, 10:12, 20:30] = 3.0  # a formant-like band
    assert torch.allclose(spec_warp(x, SpecWarpConfig(max_freq_warp=0, max_time_warp=0)), x, atol=1e-4)
    up = spec_warp(x, SpecWarpConfig(max_freq_warp=0.3, max_time_warp=0.0))
    centre = lambda t: (t[0, 0].clamp(min=0).sum(1) * torch.arange(40.0)).sum() / t[0, 0].clamp(min=0).sum()  # noqa: E731
    assert abs(centre(up) - centre(x)) > 0.5  # the band moved along the mel axis
    assert up.min() >= -5.0 - 1e-4  # uncovered bins take the silence floor


def test_mel_noise_colour_and_level():
    from mmops.config import MelNoiseConfig

    torch.manual_seed(0)
    x = torch.full((4, 1, 40, 50), -2.0)
    violet = mel_noise(x, MelNoiseConfig(p=1.0, snr_db=(0.0, 0.0), tilt=(1.0, 1.0))) - x
    brown = mel_noise(x, MelNoiseConfig(p=1.0, snr_db=(0.0, 0.0), tilt=(-1.0, -1.0))) - x
    assert violet[:, :, -5:].mean() > violet[:, :, :5].mean() and brown[:, :, :5].mean() > brown[:, :, -5:].mean()
    quiet = mel_noise(x, MelNoiseConfig(p=1.0, snr_db=(40.0, 40.0), tilt=(0.0, 0.0))) - x
    assert 0 < quiet.mean() < violet.mean() / 10
    assert torch.equal(mel_noise(x, MelNoiseConfig(p=0.0)), x)


def test_augment_batch_off_by_default_and_leaves_other_keys():
    batch = _batch(4)
    assert not AugmentConfig().enabled
    assert augment_batch(batch, AugmentConfig())["image"] is batch["image"]
    out = augment_batch(batch, AugmentConfig(specaugment=SpecAugmentConfig(), image_jitter=ImageJitterConfig()))
    assert out["text"] is batch["text"] and out["present"] is batch["present"]
    assert not torch.equal(out["audio"]["mel"], batch["audio"]["mel"]) and not torch.equal(out["image"], batch["image"])
    assert out["audio"]["frames"] is batch["audio"]["frames"]
