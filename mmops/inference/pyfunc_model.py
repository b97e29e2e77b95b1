"""Models-from-code entry point: MLflow runs this script when the registered pyfunc is loaded,
instead of unpickling a model object."""

import mlflow.models

from mmops.inference.pyfunc import MultimodalPyfunc

mlflow.models.set_model(MultimodalPyfunc())
