"""Experiments over the pipeline: ablations that train and evaluate several variants."""
