"""Audio of any length, rate, channel count and format: bounded decode, any-rate resampling, whole-clip log-mels."""

from __future__ import annotations

import io
import math
import time
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
import torch

from mmops.config import AudioFeatures, FeaturesConfig
from mmops.features import FeatureExtractor
from datagen.hostile import flac, wav
from mmops.features.audio import MAX_RATIO_TERM, LogMel, decode_mono, rate_ratio
from mmops.features.media import BLOCK_FRAMES, AudioRefused

HOP, N_MELS = 256, 40


def _clip(rate: int, seconds: float, cue_at: float | None = None, channels: int = 1, fmt: str = "WAV") -> bytes:
    """Quiet noise, with a 0.3 s 3 kHz tone starting at `cue_at` seconds."""
    rng = np.random.default_rng(0)
    n = int(rate * seconds)
    wave = 0.01 * rng.standard_normal(n)
    if cue_at is not None:
        t = np.arange(int(0.3 * rate)) / rate
        start = int(cue_at * rate)
        wave[start : start + len(t)] += 0.5 * np.sin(2 * np.pi * 3000 * t)
    stereo = np.stack([wave, wave * 0.5], axis=1)[:, :channels].astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, stereo, rate, format=fmt)
    return buf.getvalue()


def _cfg(window: float = 1.0, clip: float = 4.0) -> AudioFeatures:
    return AudioFeatures(max_seconds=window, max_clip_seconds=clip)


def _band_energy(mel: torch.Tensor) -> torch.Tensor:
    """Per-frame energy of the top mel bands (where the 3 kHz cue sits)."""
    return mel[0, 25:28].mean(0)


@pytest.mark.parametrize(
    "rate, seconds, channels, fmt, cue_at",
    [(44100, 4.0, 2, "WAV", 3.2), (22050, 2.0, 1, "FLAC", 1.5), (16000, 3.0, 1, "MP3", 2.4), (48000, 2.5, 2, "OGG", 2.0)],
)
def test_long_clips_of_any_rate_and_format_keep_the_whole_clip(rate, seconds, channels, fmt, cue_at):
    clip = LogMel(_cfg())(_clip(rate, seconds, cue_at, channels, fmt))
    total = int(4.0 * 16000) // HOP + 1
    assert clip["mel"].shape == (1, N_MELS, total)
    valid = int(clip["frames"])
    assert abs(valid - (int(seconds * 16000) // HOP + 1)) <= 2  # MP3 adds a few frames of encoder delay
    energy = _band_energy(clip["mel"])
    cue = int(cue_at * 16000) // HOP
    assert energy[cue + 3 : cue + 12].mean() > energy[: cue - 40].mean() + 3  # the late cue is in the features
    assert torch.all(clip["mel"][..., valid + 1 :] == math.log(1e-6))  # zero padding beyond the signal


def test_decode_reads_only_the_frames_it_needs(monkeypatch):
    reads = []
    original = sf.SoundFile.read

    def spy(self, frames=-1, *args, **kwargs):
        reads.append(frames)
        return original(self, frames, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", spy)
    wave = decode_mono(_clip(44100, 10.0, channels=2), 16000, max_seconds=1.5)
    assert sum(reads) == math.ceil(1.5 * 44100) and max(reads) <= BLOCK_FRAMES and wave.shape == (24000,)


def _peak_hz(wave: np.ndarray, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.argmax(spectrum) * rate / len(wave))


def test_stereo_is_downmixed_and_rates_are_resampled():
    t = np.arange(44100) / 44100
    tone = 0.4 * np.sin(2 * np.pi * 440 * t)
    buf = io.BytesIO()
    sf.write(buf, np.stack([tone, -tone], 1).astype(np.float32), 44100, format="WAV", subtype="FLOAT")
    assert decode_mono(buf.getvalue(), 16000, 5.0).abs().max() < 1e-6  # L + R cancel
    ref = 0.4 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    for rate in (44100, 16001, 47999, 22050, 8000):
        buf = io.BytesIO()
        sf.write(buf, (0.4 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.float32), rate, format="WAV")
        wave = decode_mono(buf.getvalue(), 16000, 5.0).numpy()
        assert abs(len(wave) - 16000) <= 2
        assert abs(_peak_hz(wave) - 440) <= 1, rate  # odd rates snap to a near ratio: pitch within 0.1 %
        if rate in (44100, 22050, 8000):  # usual rates convert exactly
            assert np.abs(wave[200:15000] - ref[200:15000]).max() < 0.02, rate


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 32000, 44100, 48000, 96000, 192000, 16001, 47999, 191999])
def test_rate_ratios_are_small_and_close(rate):
    up, down = rate_ratio(rate, 16000)
    assert max(up, down) <= MAX_RATIO_TERM
    assert abs(up / down - 16000 / rate) <= 1e-3 * 16000 / rate
    if rate % 25 == 0:  # the usual rates: exact
        assert up * rate == down * 16000


@pytest.mark.parametrize(
    "data, rule",
    [
        (wav(192000, 100, channels=9), "9 channels, above the 8-channel limit"),
        (wav(400_000, 100), "sample rate 400000 Hz is outside 1000..192000 Hz"),
        (wav(500, 100), "sample rate 500 Hz is outside"),
    ],
)
def test_headers_are_refused_before_decoding(data, rule, monkeypatch):
    monkeypatch.setattr(sf.SoundFile, "read", lambda *a, **k: pytest.fail("decoded a refused file"))
    with pytest.raises(AudioRefused, match=rule):
        decode_mono(data, 16000, 30.0)


@pytest.mark.parametrize("name", ["16001 Hz", "47999 Hz", "191999 Hz", "8 ch 192 kHz FLAC"])
def test_hostile_rates_and_channels_cost_little(name):
    """30 s clips at odd rates and an 8-channel 192 kHz FLAC: well under a second and 100 MB."""
    data = flac(192000, 30.0, 8) if "FLAC" in name else wav(int(name.split()[0]), int(name.split()[0]) * 30)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        wave = decode_mono(data, 16000, 30.0)
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert abs(len(wave) - 30 * 16000) <= 30, name
    assert elapsed < 2.0, (name, elapsed)  # 0.01-0.9 s here; unbounded, 191999 Hz took 1 s and 156 MB more
    assert peak < 100e6, (name, peak)  # the 8 channels read at once would be 184 MB


@pytest.mark.parametrize("frames", [0, 16001 * 3])
def test_awkward_rate_pairs_decode_fast(frames):
    """16,001 -> 16,000 Hz: torchaudio's kernel would be 16,000 x 16,001 (26 s, 4 GB)."""
    started = time.perf_counter()
    clip = LogMel(_cfg(1.0, 4.0))(wav(16001, frames))
    assert time.perf_counter() - started < 2.0
    assert clip["mel"].shape[-1] == int(4.0 * 16000) // HOP + 1


def test_demo_clip_is_unchanged():
    """clip == window (1.5 s, the demo): the log-mel of the first 1.5 s, zero-padded, as before."""
    data = _clip(16000, 1.2, cue_at=0.5)
    clip = LogMel(AudioFeatures())(data)
    wave, _ = sf.read(io.BytesIO(data), dtype="float32")
    wave = torch.nn.functional.pad(torch.from_numpy(wave), (0, 24000 - len(wave)))
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=400, hop_length=HOP, n_mels=N_MELS)(wave)
    assert torch.equal(clip["mel"], torch.log(mel + 1e-6).unsqueeze(0))
    assert int(clip["frames"]) == int(1.2 * 16000) // HOP + 1


def test_extractor_batches_clips_with_their_frame_counts(tmp_path):
    cfg = FeaturesConfig(audio=_cfg(1.0, 4.0))
    extractor = FeatureExtractor(cfg, ["audio"], None, cache_dir=tmp_path)
    batch = extractor([""] * 3, [None] * 3, [_clip(44100, 4.0, 3.0, 2), None, _clip(22050, 2.0, None, 1, "FLAC")])
    assert batch["audio"]["mel"].shape == (3, 1, N_MELS, 251)
    assert batch["audio"]["frames"].tolist() == [251, 0, 126]
    assert batch["present"]["audio"].tolist() == [True, False, True]
    waveform = FeatureExtractor(cfg, ["audio"], None, audio_input="waveform")
    wave = waveform([""], [None], [_clip(44100, 6.0, channels=2)])["audio"]
    assert wave["waveform"].shape == (1, 64000) and wave["length"].tolist() == [64000]  # clip_seconds of waveform
