"""Media file rules: path containment, existence, content type, full decode, bounds, split leakage.

Bounds that a header shows (image size, audio rate, channels, duration) are checked before
anything is decoded, so a small hostile file is refused fast and in little memory.

Decoding small files is GIL-bound (threads made it slower), so `workers` > 1 runs the per-file
checks in spawned worker processes beside this one (mmops.validate.parallel), in batches of
paths; each worker reads and decodes its files itself and sends back only digests and problems.
Results are put back in manifest order, so the report is the same whoever checked which file.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mmops.config.validate import AUDIO_FORMATS, IMAGE_FORMATS, ValidateConfig
from mmops.data.hashing import InsideResolver
from mmops.data.manifest import ALL_SPLITS, MEDIA_COLUMNS
from mmops.validate.parallel import ordered_map
from mmops.validate.report import Findings

PATH_RULES = ("path_inside_dataset", "file_exists", "media_type_matches")
IMAGE_RULES = ("image_decodes", "image_size", "image_mode")
AUDIO_RULES = ("audio_decodes", "audio_not_empty", "audio_finite", "audio_duration", "audio_sample_rate")
MAX_AUDIO_CHANNELS = 8  # as mmops.features.audio decodes (a layer below it, so not imported)
BLOCK_FRAMES = 65_536  # frames decoded (all channels) at a time
BATCH_FILES = (4, 32)  # files per batch: enough to amortise a round trip to a worker, few enough to balance


def sniff(head: bytes) -> str | None:
    """The media format from a file's first bytes (magic numbers), or None if unrecognised."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE":
        return "WAV"
    if head[:2] == b"BM":
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[:4] == b"fLaC":
        return "FLAC"
    if head[:4] == b"OggS":
        return "OGG"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "MP3"
    return None


_ADDRESS = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")  # e.g. <_io.BytesIO object at 0x7f...>: differs run to run


def _reason(err: BaseException) -> str:
    """'Type: message' on one line, without object addresses, so a report is the same from run to run
    and from process to process."""
    text = getattr(err, "error_string", None) or str(err)  # libsndfile's own words, without the file's repr
    return f"{type(err).__name__}: {' '.join(_ADDRESS.sub('', text).split())}"


@dataclass
class FileResult:
    """What checking one (file, column) found."""

    digest: str | None = None
    size: int = 0
    fmt: str | None = None
    problems: list[tuple[str, str]] = field(default_factory=list)  # (rule, detail)


def check_image(data: bytes, cfg: ValidateConfig) -> list[tuple[str, str]]:
    """Decode the whole image (not just its header) and check its size and mode."""
    from PIL import Image

    lo, hi = cfg.image_min_side, cfg.image_max_side
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            problems = []
            if not (lo <= w <= hi and lo <= h <= hi):
                problems.append(("image_size", f"{w}x{h} px is outside {lo}..{hi} px per side"))
                if w > hi or h > hi:  # do not decode what may be a decompression bomb
                    return problems
            if im.mode not in cfg.image_modes:
                problems.append(("image_mode", f"mode {im.mode} is not one of {cfg.image_modes}"))
            im.load()
            return problems
    except Image.DecompressionBombError as err:
        return [("image_size", f"too many pixels: {err}")]
    except Exception as err:
        return [("image_decodes", f"does not decode: {_reason(err)}")]


def wav_shortfall(data: bytes) -> str | None:
    """For a RIFF/WAVE file whose `data` chunk announces more bytes than the file holds, say so.

    libsndfile quietly shortens such a file to what is there, so a cut-off WAV would decode.
    """
    if data[:4] not in (b"RIFF", b"RIFX") or data[8:12] != b"WAVE":
        return None
    order = "little" if data[:4] == b"RIFF" else "big"
    off = 12
    while off + 8 <= len(data):
        cid, size = data[off : off + 4], int.from_bytes(data[off + 4 : off + 8], order)
        if cid == b"data":
            have = len(data) - off - 8
            if size in (0, 0xFFFFFFFF):  # length left open by a streaming writer
                return None
            return f"truncated: data chunk announces {size} bytes, file holds {have}" if size > have else None
        off += 8 + size + (size & 1)
    return "no data chunk"


def check_audio(data: bytes, cfg: ValidateConfig) -> list[tuple[str, str]]:
    """Check the header's sample rate, channels and duration, then decode (block by block, at most
    the allowed duration) and check the samples. A file refused from its header is never decoded."""
    import soundfile as sf

    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            sr, frames, channels = f.samplerate, f.frames, f.channels
            problems = _audio_header_problems(sr, frames, channels, cfg)
            if problems:
                return problems
            n, bad = 0, 0
            limit = math.ceil(cfg.audio_max_duration_s * sr) + 1
            for block in f.blocks(blocksize=BLOCK_FRAMES, frames=min(frames, limit) if frames > 0 else limit,
                                  dtype="float32", always_2d=True):
                n += len(block)
                bad += int(block.size - np.count_nonzero(np.isfinite(block)))
    except Exception as err:
        return [("audio_decodes", f"does not decode: {_reason(err)}")]
    problems = []
    short = wav_shortfall(data)
    if short is None and 0 <= frames < 2**62 and n < min(frames, limit):
        short = f"truncated: header announces {frames} frames, {n} decoded"
    if short:
        problems.append(("audio_decodes", short))
    if n == 0:
        problems.append(("audio_not_empty", "no samples"))
        return problems
    if bad:
        problems.append(("audio_finite", f"{bad} of {n * channels} samples are NaN or infinite"))
    dur = n / sr
    if not cfg.audio_min_duration_s <= dur <= cfg.audio_max_duration_s:
        shown = f"more than {cfg.audio_max_duration_s}" if n >= limit else f"{dur:.3f}"
        problems.append(("audio_duration", f"{shown} s is outside "
                                           f"{cfg.audio_min_duration_s}..{cfg.audio_max_duration_s} s"))
    return problems


def _audio_header_problems(sr: int, frames: int, channels: int, cfg: ValidateConfig) -> list[tuple[str, str]]:
    """What the header alone shows to be out of bounds (nothing is decoded then)."""
    problems = []
    if not cfg.audio_min_sample_rate <= sr <= cfg.audio_max_sample_rate:
        problems.append(("audio_sample_rate", f"{sr} Hz is outside "
                                              f"{cfg.audio_min_sample_rate}..{cfg.audio_max_sample_rate} Hz"))
    if channels > MAX_AUDIO_CHANNELS:
        problems.append(("audio_decodes", f"refused before decoding: {channels} channels, above the "
                                          f"{MAX_AUDIO_CHANNELS}-channel limit"))
    if sr > 0 and frames / sr > cfg.audio_max_duration_s and frames < 2**62:
        problems.append(("audio_duration", f"{frames / sr:.3f} s (from the header) is outside "
                                           f"{cfg.audio_min_duration_s}..{cfg.audio_max_duration_s} s"))
    return problems


def check_file(path: Path, cell: str, column: str, cfg: ValidateConfig) -> FileResult:
    """Existence, content type by magic bytes, then a full decode of one media file."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except (FileNotFoundError, NotADirectoryError):
        return FileResult(problems=[("file_exists", f"'{cell}' does not exist")])
    except IsADirectoryError:
        return FileResult(problems=[("file_exists", f"'{cell}' is a directory, not a file")])
    except OSError as err:
        return FileResult(problems=[("file_exists", f"'{cell}' cannot be read: {err.strerror or err}")])
    res = FileResult(digest=hashlib.sha256(data).hexdigest(), size=len(data), fmt=sniff(data[:16]))
    allowed = cfg.image_formats if column == "image" else cfg.audio_formats
    other = AUDIO_FORMATS if column == "image" else IMAGE_FORMATS
    if not data:
        res.problems.append(("media_type_matches", f"'{cell}' is empty (0 bytes)"))
    elif res.fmt is None:
        res.problems.append(("media_type_matches", f"'{cell}' content is no known {column} format "
                                                   f"(starts {data[:8]!r})"))
    elif res.fmt in other:
        res.problems.append(("media_type_matches", f"'{cell}' in the {column} column holds {res.fmt} content"))
    elif res.fmt not in allowed:
        res.problems.append(("media_type_matches", f"'{cell}' is {res.fmt}, allowed {column} formats: {allowed}"))
    if res.problems:
        return res
    res.problems = check_image(data, cfg) if column == "image" else check_audio(data, cfg)
    return res


Job = tuple[str, str, str]  # (resolved path, manifest cell, column)
_worker_cfg: ValidateConfig | None = None  # set in each worker process by _init_worker


def _init_worker(cfg: ValidateConfig) -> None:
    global _worker_cfg
    _worker_cfg = cfg


def check_batch(jobs: list[Job], cfg: ValidateConfig | None = None) -> list[FileResult]:
    """check_file over a batch of jobs (in a worker: with the config its initializer received)."""
    cfg = cfg or _worker_cfg
    assert cfg is not None, "check_batch in a worker needs _init_worker first"
    return [check_file(Path(path), cell, column, cfg) for path, cell, column in jobs]


def check_jobs(jobs: list[Job], cfg: ValidateConfig, workers: int, caller_helps: bool = True
               ) -> tuple[list[FileResult], int, str | None]:
    """check_file over every job, in job order, on `workers` processes (this one included).

    Returns the results, how many files a worker process checked, and a note if workers failed.
    """
    size = max(BATCH_FILES[0], min(BATCH_FILES[1], math.ceil(len(jobs) / (max(workers, 1) * 8))))
    batches = [jobs[i : i + size] for i in range(0, len(jobs), size)]
    out = ordered_map(check_batch, batches, workers, initializer=_init_worker, initargs=(cfg,),
                      local=lambda batch: check_batch(batch, cfg), caller_helps=caller_helps)
    results = [res for part in out.results for res in part]
    in_workers = sum(len(b) for b, w in zip(batches, out.in_worker) if w)
    return results, in_workers, out.note


def check_files(
    data_dir: Path, df: pd.DataFrame, ids: list[str], cfg: ValidateConfig, findings: Findings,
    workers: int | None = None,
) -> tuple[dict[str, int], dict[Path, str]]:
    """All file rules over the manifest's media cells, on `workers` processes (default: cfg.workers,
    `auto` resolved from the number of files).

    Returns counts (files, bytes, workers, files checked in worker processes) and the sha256 of
    every file read (resolved path -> digest).
    """
    resolve = InsideResolver(data_dir)
    jobs: dict[tuple[Path, str], list[int]] = {}
    cells: dict[tuple[Path, str], str] = {}
    media = [c for c in MEDIA_COLUMNS if c in df.columns]
    if not media:
        findings.skip(PATH_RULES + IMAGE_RULES + AUDIO_RULES + ("split_leakage",), "no image or audio column")
        return {"files": 0, "bytes": 0, "workers": 1, "in_workers": 0}, {}
    findings.ran(*PATH_RULES)
    findings.ran(*(IMAGE_RULES if "image" in media else ()), *(AUDIO_RULES if "audio" in media else ()))
    if "image" not in media:
        findings.skip(IMAGE_RULES, "no image column")
    if "audio" not in media:
        findings.skip(AUDIO_RULES, "no audio column")

    for col in media:
        for i, cell in enumerate(df[col].astype(str).tolist()):
            if not cell.strip():
                continue
            resolved = resolve(cell)
            if resolved is None:
                findings.row("path_inside_dataset", col, i, ids[i],
                             f"'{cell}' resolves outside the dataset folder")
                if findings.enabled("path_inside_dataset"):
                    continue  # never read files outside the dataset
                try:
                    resolved = Path(os.path.realpath(os.path.join(resolve.root, cell)))
                except (OSError, ValueError):
                    continue
            key = (resolved, col)
            jobs.setdefault(key, []).append(i)
            cells.setdefault(key, cell)

    keys = list(jobs)
    workers = workers or cfg.resolved_workers(len(keys))
    results, in_workers, note = check_jobs([(str(p), cells[(p, c)], c) for p, c in keys], cfg, workers)
    if note:
        findings.notes.append(f"file checks: {note}")

    digests: dict[Path, str] = {}
    by_content: dict[tuple[str, str], list[int]] = defaultdict(list)
    n_bytes = 0
    for key, res in zip(keys, results):
        path, col = key
        for rule, detail in res.problems:
            for i in jobs[key]:
                findings.row(rule, col, i, ids[i], detail)
        if res.digest is not None:
            digests[path] = res.digest
            n_bytes += res.size
            by_content[(col, res.digest)].extend(jobs[key])

    _check_leakage(df, ids, by_content, findings)
    return {"files": len(keys), "bytes": n_bytes, "workers": workers, "in_workers": in_workers}, digests


def _check_leakage(df: pd.DataFrame, ids: list[str], by_content: dict[tuple[str, str], list[int]],
                   findings: Findings) -> None:
    """The same media content (sha256) in two different splits is leakage: name the samples."""
    if "split" not in df.columns:
        findings.skip(["split_leakage"], "no split column (the pipeline splits)")
        return
    findings.ran("split_leakage")
    split = df["split"].astype(str).tolist()
    for (col, digest), rows in by_content.items():
        if len(rows) < 2:
            continue
        splits = {split[i] for i in rows if split[i] in ALL_SPLITS}
        if len(splits) < 2:
            continue
        for i in sorted(set(rows)):
            others = [j for j in rows if split[j] != split[i] and split[j] in ALL_SPLITS]
            if not others or split[i] not in ALL_SPLITS:
                continue
            shown = ", ".join(f"{ids[j]} ({split[j]})" for j in others[:3])
            more = f" and {len(others) - 3} more" if len(others) > 3 else ""
            findings.row("split_leakage", col, i, ids[i],
                         f"{split[i]} sample shares {col} content {digest[:12]} with {shown}{more}")
