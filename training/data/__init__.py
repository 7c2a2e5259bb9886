"""Corpus indexing (ESD layout) and PyTorch datasets."""
