"""The registered model for MLflow users: a thin pyfunc over `mmops.inference` (raw inputs in,
labels and probabilities out; see `predict_frame`).

Its MLflow signature (`pyfunc_signature`) names the inputs `text`, `image` and `audio` (strings, all
optional: media as base64-encoded bytes, the one form a JSON request can carry) and the outputs
`label` plus one float probability column per class, named by the class; a two-row
`input_example` (one row with every modality, one with text alone) is saved with the model.

It is logged as models-from-code (`PYFUNC_CODE`, a plain script MLflow runs at load), so no
pickled object is ever unpickled. mmops itself never loads it: serving, batch predict and the
gate use `mmops.inference.verify.load_registered`. For `mlflow models serve` and other MLflow
clients it still checks the model folder against the hash in its model config, and it reads
media only as bytes or base64; a string naming a file is read only inside `MMOPS_MEDIA_ROOT`
(unset: never), so a client cannot make the server read arbitrary files.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
from pathlib import Path

import mlflow.pyfunc
import pandas as pd

from mmops.data.manifest import MEDIA_COLUMNS
from mmops.errors import UserError
from mmops.config import MODALITIES, Params
from mmops.inference.model_dir import load_checkpoint, load_model_dir
from mmops.inference.onnx_model import is_onnx_dir, load_onnx_dir, read_onnx_meta
from mmops.inference.predict import predict_frame
from mmops.inference.verify import MODEL_DIR_ARTIFACT, fetch_base_weights, verify_model_dir

PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
MEDIA_ROOT_ENV = "MMOPS_MEDIA_ROOT"

__all__ = ["MEDIA_ROOT_ENV", "MODEL_DIR_ARTIFACT", "PYFUNC_CODE", "MultimodalPyfunc", "folder_facts",
           "input_example", "media_cell", "pyfunc_signature"]
EXAMPLE_TEXT = "an example text: what this sample says"


def media_cell(value, row: int, column: str, root: Path | None):
    """One image/audio cell -> bytes, an absolute path inside `root`, or None (missing)."""
    if value is None or isinstance(value, (bytes, bytearray, memoryview)) or (isinstance(value, float) and value != value):
        return value
    text = str(value)
    if not text:
        return None
    if root is not None:
        path = (root / text).resolve()  # an absolute `text` replaces root; resolve() follows symlinks
        if path.is_relative_to(root) and path.is_file():
            return str(path)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        where = f"readable only inside {MEDIA_ROOT_ENV}={root}" if root else f"not read ({MEDIA_ROOT_ENV} is unset)"
        raise UserError(
            f"row {row}, column {column!r}: not base64-encoded bytes, and file paths are {where}"
        ) from None


class MultimodalPyfunc(mlflow.pyfunc.PythonModel):
    """Loads the model folder logged as the `model_dir` artifact (fp32, int8 or ONNX), verified first."""

    def load_context(self, context) -> None:
        model_dir = Path(context.artifacts[MODEL_DIR_ARTIFACT])
        verify_model_dir(model_dir, dict(context.model_config or {}), "the pyfunc's model_dir")
        if is_onnx_dir(model_dir):  # the ONNX variant: ONNX Runtime runs the model call
            self.loaded = load_onnx_dir(model_dir)
            return
        # frozen pretrained weights referenced by sha256: local cache or training path, else the
        # blob store of the registry MLFLOW_TRACKING_URI names (a clear error when it has none)
        fetch_base_weights(model_dir)
        self.loaded = load_model_dir(model_dir)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        frame = pd.DataFrame(model_input).reset_index(drop=True)
        root = Path(os.environ[MEDIA_ROOT_ENV]).resolve() if os.environ.get(MEDIA_ROOT_ENV) else None
        for column in MEDIA_COLUMNS:
            if column in frame:
                frame[column] = [media_cell(v, i, column, root) for i, v in enumerate(frame[column])]
        return predict_frame(self.loaded, frame)


def folder_facts(model_dir: Path) -> tuple[list[str], list[str]]:
    """(classes, modalities) of a model folder (fp32, int8 or ONNX), read without building the model."""
    if is_onnx_dir(model_dir):
        meta = read_onnx_meta(model_dir)
        classes, raw = meta["classes"], meta["params"]
    else:
        ckpt = load_checkpoint(model_dir)
        classes, raw = ckpt["classes"], ckpt["params"]
    return [str(c) for c in classes], Params.model_validate(raw).model.active()


def pyfunc_signature(classes: list[str], modalities: list[str]):
    """Inputs: the model's modalities as optional strings (media base64-encoded); outputs: `label`
    and one float32 probability column per class, as `predict_frame` returns them."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema

    inputs = Schema([ColSpec(DataType.string, m, required=False) for m in MODALITIES if m in modalities])
    outputs = Schema([ColSpec(DataType.string, "label"), *(ColSpec(DataType.float, str(c)) for c in classes)])
    return ModelSignature(inputs=inputs, outputs=outputs)


def input_example(modalities: list[str]) -> pd.DataFrame:
    """Two rows for the model's modalities: every modality (a 16 px PNG, 0.1 s of a 16 kHz tone, as
    base64), then text alone (missing media: None)."""
    import numpy as np
    import soundfile as sf
    from PIL import Image

    image, audio = io.BytesIO(), io.BytesIO()
    Image.fromarray(np.add.outer(np.arange(16), np.arange(16)).astype(np.uint8) * 8).save(image, format="PNG")
    sf.write(audio, (0.3 * np.sin(2 * np.pi * 440 * np.arange(1600) / 16000)).astype(np.float32), 16000, format="WAV")
    full = {"text": EXAMPLE_TEXT, "image": base64.b64encode(image.getvalue()).decode(),
            "audio": base64.b64encode(audio.getvalue()).decode()}
    sparse = {"text": EXAMPLE_TEXT, "image": None, "audio": None}
    return pd.DataFrame([full, sparse])[[m for m in MODALITIES if m in modalities]]
