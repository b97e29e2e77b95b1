"""The registered model: an MLflow pyfunc that takes raw inputs and returns labels + probabilities.

Input: a DataFrame with columns `text`, `image`, `audio` (any may be absent); an image or
audio cell holds a file path or raw bytes; empty or None means missing.
Output: a DataFrame with `label` and one probability column per class.
"""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import pandas as pd
import torch

MODEL_DIR_ARTIFACT = "model_dir"


def predict_frame(loaded, frame: pd.DataFrame, batch_size: int = 64) -> pd.DataFrame:
    """Raw rows -> labels and probabilities, through the training preprocessing."""
    from mmops.features.preprocess import featurize_frame
    from mmops.train.recipe import predict_logits

    frame = frame.reset_index(drop=True)
    for column in ("text", "image", "audio"):
        if column not in frame:
            frame[column] = None
    frame["text"] = frame["text"].map(lambda t: "" if t is None or (isinstance(t, float) and t != t) else t)
    batch = featurize_frame(frame, loaded.extractor, base_dir=None)
    probs = torch.softmax(predict_logits(loaded.model, batch, torch.device("cpu"), batch_size), dim=1)
    out = pd.DataFrame(probs.numpy(), columns=loaded.classes)
    out.insert(0, "label", [loaded.classes[i] for i in probs.argmax(1).tolist()])
    return out


def load_any_model_dir(model_dir: Path):
    """A model folder, fp32 (`checkpoint.pt`) or its dynamic int8 variant (`checkpoint_int8.pt`)."""
    from mmops.registry.quantize import is_int8_dir, load_int8_dir
    from mmops.train.checkpoint import load_model_dir

    return load_int8_dir(model_dir) if is_int8_dir(model_dir) else load_model_dir(model_dir)


class MultimodalPyfunc(mlflow.pyfunc.PythonModel):
    """Loads the model folder logged as the `model_dir` artifact (fp32 or int8)."""

    def load_context(self, context) -> None:
        self.loaded = load_any_model_dir(Path(context.artifacts[MODEL_DIR_ARTIFACT]))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return predict_frame(self.loaded, pd.DataFrame(model_input))
