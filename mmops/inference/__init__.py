"""Inference: the model folder (fp32 and int8, one loader; the ONNX variant, run by ONNX Runtime)
and the one prediction path, shared by evaluation, the registry, quantisation and serving. Imports
only features and models."""
