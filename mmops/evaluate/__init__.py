"""Evaluation: metrics, per-class report, confusion matrix, modality ablation."""

from mmops.evaluate.evaluation import evaluate
from mmops.evaluate.metrics import classification_metrics

__all__ = ["classification_metrics", "evaluate"]
