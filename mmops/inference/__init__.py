"""Inference: the model folder (fp32 and int8, one loader) and the one prediction path, shared by
evaluation, the registry, quantisation and serving. Imports only features and models."""
