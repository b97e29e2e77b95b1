import io

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from mmops.config import FeaturesConfig
from mmops.features import FeatureExtractor, load_media_bytes


def _png(value=200, size=(24, 24)):
    buf = io.BytesIO()
    Image.fromarray(np.full(size[::-1], value, np.uint8), "L").save(buf, format="PNG")
    return buf.getvalue()


def _wav(sr=16000, seconds=0.5, freq=440.0):
    t = np.arange(int(sr * seconds)) / sr
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr, format="WAV")
    return buf.getvalue()


@pytest.fixture
def extractor(tiny_text_model, tmp_path):
    return FeatureExtractor(FeaturesConfig(), ["text", "image", "audio"], str(tiny_text_model), cache_dir=tmp_path)


def test_shapes_and_presence(extractor):
    batch = extractor(["an even number", ""], [_png(), None], [None, _wav()])
    assert batch["image"].shape == (2, 1, 16, 16)
    frames = int(1.5 * 16000) // 256 + 1
    assert batch["audio"]["mel"].shape == (2, 1, 40, frames)
    assert batch["audio"]["frames"].tolist() == [0, 8000 // 256 + 1]  # 0.5 s of signal in a 1.5 s clip
    assert batch["text"]["input_ids"].shape == (2, 32)
    assert batch["present"]["text"].tolist() == [True, False]
    assert batch["present"]["image"].tolist() == [True, False]
    assert batch["present"]["audio"].tolist() == [False, True]
    assert torch.all(batch["image"][1] == 0)


def test_image_normalised(extractor):
    white = extractor([""], [_png(255)], [None])["image"]
    black = extractor([""], [_png(0)], [None])["image"]
    assert torch.allclose(white, torch.ones_like(white))
    assert torch.allclose(black, -torch.ones_like(black))


def test_audio_resampled_from_other_rate(extractor):
    a = extractor([""], [None], [_wav(sr=16000)])["audio"]["mel"]
    b = extractor([""], [None], [_wav(sr=22050)])["audio"]["mel"]
    # same tone, resampled to 16 kHz: nearly the same log-mel
    assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.99


def test_cache_keyed_by_content(extractor, tmp_path):
    extractor([""], [_png(10)], [_wav()])
    files = sorted(p.name for p in tmp_path.rglob("*.pt"))
    assert len(files) == 2
    extractor([""], [_png(10)], [_wav()])
    assert sorted(p.name for p in tmp_path.rglob("*.pt")) == files
    extractor([""], [_png(11)], [None])
    assert len(list(tmp_path.rglob("*.pt"))) == 3


def test_cached_equals_fresh(extractor, tiny_text_model):
    fresh = FeatureExtractor(FeaturesConfig(), ["image", "audio"], None)
    data = (["x"], [_png(77)], [_wav(freq=300)])
    first, again, uncached = extractor(*data), extractor(*data), fresh(*data)
    for key in ("mel", "frames"):
        assert torch.equal(first["audio"][key], again["audio"][key])
        assert torch.equal(first["audio"][key], uncached["audio"][key])


def test_load_media_bytes(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"abc")
    assert load_media_bytes("a.bin", tmp_path) == b"abc"
    assert load_media_bytes(str(tmp_path / "a.bin")) == b"abc"
    assert load_media_bytes(b"xyz") == b"xyz"
    for missing in ("", None, float("nan"), b""):
        assert load_media_bytes(missing, tmp_path) is None


def test_pii_scrubbed_before_tokenizing_when_enabled(tiny_text_model):
    from mmops.config import TextFeatures
    from mmops.features.text import TextTokenizer

    scrubbing = TextTokenizer(TextFeatures(scrub_pii=True), str(tiny_text_model))
    plain = TextTokenizer(TextFeatures(), str(tiny_text_model))
    raw = ["an even number, mail jane.doe@example.com or call +1 415 555 0100"]
    scrubbed = ["an even number, mail [EMAIL] or call [PHONE]"]
    assert torch.equal(scrubbing(raw)["input_ids"], plain(scrubbed)["input_ids"])
    assert not torch.equal(plain(raw)["input_ids"], plain(scrubbed)["input_ids"])


def test_corrupt_cache_entry_is_recomputed(extractor, tmp_path):
    data = ([""], [_png(42)], [_wav(freq=500)])
    first = extractor(*data)
    for path in tmp_path.rglob("*.pt"):
        path.write_bytes(path.read_bytes()[:10])  # truncated
    again = extractor(*data)
    assert torch.equal(again["image"], first["image"]) and torch.equal(again["audio"]["mel"], first["audio"]["mel"])
    image, clip = (torch.load(next((tmp_path / m).rglob("*.pt")), weights_only=True) for m in ("image", "audio"))
    assert image.shape == first["image"].shape[1:] and clip["mel"].shape == first["audio"]["mel"].shape[1:]
