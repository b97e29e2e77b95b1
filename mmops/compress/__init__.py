"""Compression recipes: variants of a trained model (dynamic int8, ONNX export, a distilled student, a
pruned copy), each compared with the fp32 model on the same test split before it may be registered."""
