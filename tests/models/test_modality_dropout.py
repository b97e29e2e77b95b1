"""Modality dropout (training only) and config-driven augmentation."""

import pytest
import torch

from mmops.config import AugmentConfig, ImageJitterConfig, SpecAugmentConfig, load_params
from mmops.models import MultimodalClassifier
from mmops.models.augment import augment_batch, image_jitter, spec_augment


def _batch(n=32):
    return {
        "text": {"input_ids": torch.randint(1, 40, (n, 8)), "attention_mask": torch.ones(n, 8, dtype=torch.long)},
        "image": torch.randn(n, 1, 16, 16),
        "audio": torch.randn(n, 1, 40, 50),
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


def test_augment_batch_off_by_default_and_leaves_other_keys():
    batch = _batch(4)
    assert not AugmentConfig().enabled
    assert augment_batch(batch, AugmentConfig())["image"] is batch["image"]
    out = augment_batch(batch, AugmentConfig(specaugment=SpecAugmentConfig(), image_jitter=ImageJitterConfig()))
    assert out["text"] is batch["text"] and out["present"] is batch["present"]
    assert not torch.equal(out["audio"], batch["audio"]) and not torch.equal(out["image"], batch["image"])
