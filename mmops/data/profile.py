"""A dataset card: what a dataset folder holds, before any training.

`profile_dataset(data_dir)` reads the manifest (`mmops.data.manifest.read_manifest`) and a bounded,
deterministic sample of its media, and returns a `DatasetProfile`: rows per split and class,
modality coverage, image sizes / colour / formats, audio rates / channels / durations / formats,
text lengths, duplicates and class imbalance. It imports neither torch nor transformers.

Bounded: images are opened for their header (size, mode, format) and, for the colour check,
reduced to a small thumbnail (JPEGs are decoded at 1/2..1/8 scale through `draft`; other formats
are decoded once, never kept); audio is read through `soundfile.info` (headers only, never
samples). Text lengths cover every row (the manifest is in memory anyway). Deterministic: the media of a column are sorted
by (sample_id, path) and `sample_*` evenly spaced ones are read, the first and last included.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from mmops.data.manifest import ALL_SPLITS, MEDIA_COLUMNS, manifest_path, read_manifest

MODALITIES = ("text", "image", "audio")
THUMB_PX = 64
# A pixel is coloured when its channels spread by more than this (0..255); an image is colour
# when more than COLOUR_MIN_FRACTION of its thumbnail pixels are (JPEG chroma noise stays below).
COLOUR_SPREAD = 12
COLOUR_MIN_FRACTION = 0.01
MAX_LISTED = 20  # duplicate ids / paths and errors listed (the counts are exact)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Stats(_Model):
    """Summary of a numeric sample."""

    n: int
    min: float
    median: float
    p95: float
    max: float

    @classmethod
    def of(cls, values) -> Stats | None:
        a = np.asarray(list(values), dtype=np.float64)
        if a.size == 0:
            return None
        return cls(
            n=int(a.size),
            min=float(a.min()),
            median=float(np.median(a)),
            p95=float(np.percentile(a, 95)),
            max=float(a.max()),
        )

    def short(self, digits: int = 0) -> str:
        f = f"{{:.{digits}f}}"
        return " / ".join(f.format(v) for v in (self.min, self.median, self.p95, self.max))


class Coverage(_Model):
    """One modality: is its column in the manifest, and how many cells hold data."""

    column: bool
    non_empty: int = 0
    fraction: float = 0.0


class Duplicates(_Model):
    sample_ids: int = 0
    sample_id_examples: list[str] = Field(default_factory=list)
    media_paths: dict[str, int] = Field(default_factory=dict)  # column -> rows sharing a path
    media_path_examples: dict[str, list[str]] = Field(default_factory=dict)


class ImageProfile(_Model):
    n_media: int  # non-empty cells
    n_sampled: int
    n_missing_files: int = 0
    n_unreadable: int = 0
    width: Stats | None = None
    height: Stats | None = None
    colour_fraction: float | None = None  # of readable sampled images: channels differ meaningfully
    modes: dict[str, int] = Field(default_factory=dict)
    formats: dict[str, int] = Field(default_factory=dict)
    errors: list[str] = Field(default_factory=list)


class AudioProfile(_Model):
    n_media: int
    n_sampled: int
    n_missing_files: int = 0
    n_unreadable: int = 0
    sample_rates: dict[int, int] = Field(default_factory=dict)
    channels: dict[int, int] = Field(default_factory=dict)
    duration_s: Stats | None = None
    formats: dict[str, int] = Field(default_factory=dict)
    subtypes: dict[str, int] = Field(default_factory=dict)
    errors: list[str] = Field(default_factory=list)


class TextProfile(_Model):
    n_non_empty: int
    words: Stats | None = None
    chars: Stats | None = None


class DatasetProfile(_Model):
    """A dataset card (no training): see the module docstring."""

    data_dir: str
    manifest: str
    n_rows: int
    columns: list[str]
    has_split: bool
    splits: dict[str, int] = Field(default_factory=dict)
    classes: dict[str, int] = Field(default_factory=dict)
    classes_per_split: dict[str, dict[str, int]] = Field(default_factory=dict)
    imbalance_ratio: float | None = None  # max / min class count
    modalities: dict[str, Coverage]
    duplicates: Duplicates
    image: ImageProfile | None = None
    audio: AudioProfile | None = None
    text: TextProfile | None = None
    warnings: list[str] = Field(default_factory=list)

    @property
    def present_modalities(self) -> list[str]:
        """The modalities whose column exists and holds data."""
        return [m for m, c in self.modalities.items() if c.column and c.non_empty > 0]

    def markdown(self) -> str:
        """The card as Markdown."""
        out = [f"# Dataset profile: `{self.data_dir}`", ""]
        out.append(
            f"{self.n_rows} rows in `{self.manifest}`; columns: {', '.join(f'`{c}`' for c in self.columns)}."
        )
        out.append("")
        out += ["## Rows", ""]
        split_names = list(self.splits) if self.has_split else []
        header = ["class", "total"] + split_names
        out.append("| " + " | ".join(header) + " |")
        out.append("| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |")
        for cls, n in self.classes.items():
            cells = [f"`{cls}`", str(n)] + [str(self.classes_per_split.get(s, {}).get(cls, 0)) for s in split_names]
            out.append("| " + " | ".join(cells) + " |")
        totals = ["**all**", str(self.n_rows)] + [str(self.splits[s]) for s in split_names]
        out.append("| " + " | ".join(totals) + " |")
        out.append("")
        if not self.has_split:
            out.append("No `split` column: the pipeline splits (stratified, seeded).")
        if self.imbalance_ratio is not None:
            out.append(f"Class imbalance (max / min count): {self.imbalance_ratio:.2f}.")
        out.append("")
        out += ["## Modalities", "", "| modality | column | non-empty | fraction |", "| --- | --- | ---: | ---: |"]
        for m, c in self.modalities.items():
            col = "yes" if c.column else "no"
            out.append(f"| {m} | {col} | {c.non_empty} | {c.fraction:.1%} |")
        out.append("")
        if self.image is not None:
            im = self.image
            out += ["## Images", ""]
            out.append(f"- sampled {im.n_sampled} of {im.n_media} (missing files {im.n_missing_files}, unreadable {im.n_unreadable})")
            if im.width and im.height:
                out.append(f"- width px (min / median / p95 / max): {im.width.short()}")
                out.append(f"- height px (min / median / p95 / max): {im.height.short()}")
            if im.colour_fraction is not None:
                out.append(f"- colour: {im.colour_fraction:.1%}")
            out.append(f"- modes: {_counts(im.modes)}; formats: {_counts(im.formats)}")
            out.append("")
        if self.audio is not None:
            au = self.audio
            out += ["## Audio", ""]
            out.append(f"- sampled {au.n_sampled} of {au.n_media} (missing files {au.n_missing_files}, unreadable {au.n_unreadable})")
            out.append(f"- sample rates Hz: {_counts(au.sample_rates)}; channels: {_counts(au.channels)}")
            if au.duration_s:
                out.append(f"- duration s (min / median / p95 / max): {au.duration_s.short(2)}")
            out.append(f"- formats: {_counts(au.formats)}; subtypes: {_counts(au.subtypes)}")
            out.append("")
        if self.text is not None and self.text.words and self.text.chars:
            out += ["## Text", ""]
            out.append(f"- words (min / median / p95 / max): {self.text.words.short()}")
            out.append(f"- characters (min / median / p95 / max): {self.text.chars.short()}")
            out.append("")
        d = self.duplicates
        out += ["## Duplicates", ""]
        out.append(f"- sample_id: {d.sample_ids}" + (f" (e.g. {', '.join(d.sample_id_examples[:5])})" if d.sample_ids else ""))
        for col, n in d.media_paths.items():
            ex = d.media_path_examples.get(col, [])
            out.append(f"- {col} paths shared by several rows: {n}" + (f" (e.g. {', '.join(ex[:5])})" if n else ""))
        out.append("")
        if self.warnings:
            out += ["## Warnings", ""] + [f"- {w}" for w in self.warnings] + [""]
        return "\n".join(out)


def _counts(d: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in d.items()) if d else "-"


def _sorted_counts(values) -> dict:
    return dict(sorted(Counter(values).items(), key=lambda kv: (-kv[1], str(kv[0]))))


def _evenly(n: int, k: int) -> list[int]:
    """k evenly spaced indices in range(n), first and last included (all of them when k >= n)."""
    if k <= 0 or n == 0:
        return []
    if k >= n:
        return list(range(n))
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, k)})


def _media_sample(df: pd.DataFrame, column: str, k: int) -> tuple[int, list[str]]:
    """(non-empty cells, evenly spaced paths of the cells sorted by (sample_id, path))."""
    ids = df["sample_id"] if "sample_id" in df.columns else pd.Series("", index=df.index)
    keep = df[column] != ""
    pairs = sorted(zip(ids[keep], df[column][keep]))
    return len(pairs), [pairs[i][1] for i in _evenly(len(pairs), k)]


def _resolve(data_dir: Path, rel: str) -> Path:
    p = Path(rel)
    return p if p.is_absolute() else data_dir / p


def _is_colour(img) -> bool:
    """Whether the image's channels differ meaningfully, from a small thumbnail."""
    from PIL import Image

    if img.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"):
        return False
    if img.mode == "P":
        # A palette image: look at the palette colours actually used, after conversion.
        img = img.convert("RGBA")
    img.thumbnail((THUMB_PX, THUMB_PX), Image.Resampling.NEAREST)
    a = np.asarray(img.convert("RGB"), dtype=np.int16).reshape(-1, 3)
    spread = a.max(axis=1) - a.min(axis=1)
    return float((spread > COLOUR_SPREAD).mean()) > COLOUR_MIN_FRACTION


def _read_sampled(data_dir: Path, paths: list[str], prof: ImageProfile | AudioProfile, read) -> list:
    """`read(path)` for each sampled file; a missing or unreadable file is counted and noted, not raised."""
    out = []
    for rel in paths:
        path = _resolve(data_dir, rel)
        if not path.is_file():
            prof.n_missing_files += 1
            _note(prof.errors, f"{rel}: no such file")
            continue
        try:
            out.append(read(path))
        except Exception as e:  # noqa: BLE001 - any decoder error is a finding, not a crash
            prof.n_unreadable += 1
            _note(prof.errors, f"{rel}: {type(e).__name__}: {e}")
    return out


def _image_facts(path: Path) -> tuple[int, int, str, str, bool]:
    """(width, height, mode, format, in colour) from the header and a small draft decode."""
    from PIL import Image

    with Image.open(path) as img:
        w, h = img.size
        mode, fmt = img.mode, img.format or "?"
        if fmt == "JPEG":
            img.draft("RGB", (THUMB_PX, THUMB_PX))  # decode at 1/2..1/8 scale
        return w, h, mode, fmt, _is_colour(img)


def _profile_images(data_dir: Path, df: pd.DataFrame, k: int) -> ImageProfile:
    n_media, paths = _media_sample(df, "image", k)
    prof = ImageProfile(n_media=n_media, n_sampled=len(paths))
    facts = _read_sampled(data_dir, paths, prof, _image_facts)
    widths, heights, modes, formats, colour = (list(c) for c in zip(*facts)) if facts else ([],) * 5
    prof.width, prof.height = Stats.of(widths), Stats.of(heights)
    prof.colour_fraction = float(np.mean(colour)) if colour else None
    prof.modes, prof.formats = _sorted_counts(modes), _sorted_counts(formats)
    return prof


def _profile_audio(data_dir: Path, df: pd.DataFrame, k: int) -> AudioProfile:
    import soundfile as sf

    n_media, paths = _media_sample(df, "audio", k)
    prof = AudioProfile(n_media=n_media, n_sampled=len(paths))
    infos = _read_sampled(data_dir, paths, prof, lambda path: sf.info(str(path)))
    prof.sample_rates = _sorted_counts([int(i.samplerate) for i in infos])
    prof.channels = _sorted_counts([int(i.channels) for i in infos])
    prof.duration_s = Stats.of([i.frames / i.samplerate if i.samplerate else 0.0 for i in infos])
    prof.formats, prof.subtypes = _sorted_counts([i.format for i in infos]), _sorted_counts([i.subtype for i in infos])
    return prof


def _note(errors: list[str], msg: str) -> None:
    if len(errors) < MAX_LISTED:
        errors.append(msg)


def _duplicates(df: pd.DataFrame) -> Duplicates:
    d = Duplicates()
    if "sample_id" in df.columns:
        dup = df["sample_id"][df["sample_id"].duplicated(keep=False)]
        d.sample_ids = int(dup.nunique())
        d.sample_id_examples = sorted(dup.unique().tolist())[:MAX_LISTED]
    for col in MEDIA_COLUMNS:
        if col not in df.columns:
            continue
        cells = df[col][df[col] != ""].map(lambda p: str(Path(p)))  # "a//b.png" == "a/b.png"
        dup = cells[cells.duplicated(keep=False)]
        d.media_paths[col] = int(dup.nunique())
        d.media_path_examples[col] = sorted(dup.unique().tolist())[:MAX_LISTED]
    return d


def profile_dataset(data_dir: Path, sample_images: int = 200, sample_audio: int = 200) -> DatasetProfile:
    """Profile a dataset folder (see the module docstring); reads at most the given media counts."""
    data_dir = Path(data_dir)
    df = read_manifest(data_dir)
    n = len(df)
    has_split = "split" in df.columns
    labels = df["label"] if "label" in df.columns else pd.Series([], dtype=str)
    classes = _sorted_by_key(Counter(labels.tolist()))
    per_split: dict[str, dict[str, int]] = {}
    splits: dict[str, int] = {}
    if has_split:
        splits = _sorted_by_key(Counter(df["split"].tolist()))
        for s in splits:
            per_split[s] = _sorted_by_key(Counter(labels[df["split"] == s].tolist())) if len(labels) else {}
    imbalance = (max(classes.values()) / min(classes.values())) if classes else None

    modalities = {}
    for m in MODALITIES:
        if m in df.columns:
            k = int((df[m] != "").sum())
            modalities[m] = Coverage(column=True, non_empty=k, fraction=k / n if n else 0.0)
        else:
            modalities[m] = Coverage(column=False)

    text = None
    if modalities["text"].non_empty:
        texts = df["text"][df["text"] != ""]
        text = TextProfile(
            n_non_empty=len(texts),
            words=Stats.of(texts.map(lambda t: len(t.split()))),
            chars=Stats.of(texts.map(len)),
        )
    image = _profile_images(data_dir, df, sample_images) if modalities["image"].non_empty else None
    audio = _profile_audio(data_dir, df, sample_audio) if modalities["audio"].non_empty else None

    prof = DatasetProfile(
        data_dir=str(data_dir),
        manifest=manifest_path(data_dir).name,
        n_rows=n,
        columns=list(df.columns),
        has_split=has_split,
        splits=splits,
        classes=classes,
        classes_per_split=per_split,
        imbalance_ratio=imbalance,
        modalities=modalities,
        duplicates=_duplicates(df),
        image=image,
        audio=audio,
        text=text,
    )
    prof.warnings = _warnings(prof, df)
    return prof


def _sorted_by_key(c: Counter) -> dict[str, int]:
    return {str(k): int(v) for k, v in sorted(c.items(), key=lambda kv: str(kv[0]))}


def _warnings(p: DatasetProfile, df: pd.DataFrame) -> list[str]:
    w = []
    if "label" not in df.columns:
        w.append("no `label` column")
    if not p.present_modalities:
        w.append("no modality holds data (text, image and audio are all absent or empty)")
    for m, c in p.modalities.items():
        if c.column and c.non_empty == 0:
            w.append(f"column `{m}` is present but every cell is empty")
    cols = [m for m in MODALITIES if m in df.columns]
    if cols and len(df):
        empty_rows = int((df[cols] == "").all(axis=1).sum())
        if empty_rows:
            w.append(f"{empty_rows} rows have no modality at all")
    if p.imbalance_ratio is not None and p.imbalance_ratio > 3:
        w.append(f"class imbalance {p.imbalance_ratio:.1f} (max / min count)")
    if p.classes and min(p.classes.values()) < 2:
        w.append("a class has fewer than 2 rows: a stratified split cannot place it")
    if p.duplicates.sample_ids:
        w.append(f"{p.duplicates.sample_ids} duplicated sample_id values")
    for col, k in p.duplicates.media_paths.items():
        if k:
            w.append(f"{k} {col} paths shared by several rows")
    for name, m in (("image", p.image), ("audio", p.audio)):
        if m is not None and (m.n_missing_files or m.n_unreadable):
            w.append(f"{name}: {m.n_missing_files} missing and {m.n_unreadable} unreadable of {m.n_sampled} sampled")
    if p.has_split:
        unknown = sorted(set(p.splits) - set(ALL_SPLITS))
        if unknown:
            w.append(f"unknown split names: {', '.join(unknown)}")
    return w
