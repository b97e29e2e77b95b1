"""Compression recipes: variants of a trained model (dynamic int8 today), each compared with the fp32
model on the same test split before it may be registered."""
