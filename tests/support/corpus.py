"""Size of the tiny synthetic corpus the training tests share (see tests/training/conftest.py)."""

SPEAKERS, SENTENCES, SEED = 4, 20, 7
