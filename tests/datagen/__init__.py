"""Test-data generators: datasets unlike the built-in demo, and a scikit-learn baseline."""
