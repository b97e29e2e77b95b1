"""Datasets: the manifest contract and the built-in demo dataset."""
