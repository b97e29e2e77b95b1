"""The registered model: a thin MLflow pyfunc over `mmops.inference` (raw inputs in, labels and
probabilities out; see `predict_frame`)."""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import pandas as pd

from mmops.inference.model_dir import load_model_dir
from mmops.inference.predict import predict_frame

MODEL_DIR_ARTIFACT = "model_dir"


class MultimodalPyfunc(mlflow.pyfunc.PythonModel):
    """Loads the model folder logged as the `model_dir` artifact (fp32 or int8)."""

    def load_context(self, context) -> None:
        self.loaded = load_model_dir(Path(context.artifacts[MODEL_DIR_ARTIFACT]))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return predict_frame(self.loaded, pd.DataFrame(model_input))
