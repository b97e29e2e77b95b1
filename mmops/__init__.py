"""mmops: workflow-orchestrated MLOps for multimodal classifiers."""
