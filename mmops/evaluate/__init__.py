"""Evaluation: metrics, per-class report, confusion matrix, modality ablation."""

from mmops.evaluate.metrics import classification_metrics
from mmops.evaluate.stage import evaluate

__all__ = ["classification_metrics", "evaluate"]
