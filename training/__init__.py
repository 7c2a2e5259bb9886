"""PyTorch models, losses, data and the two-stage AINN trainer (needs the 'train' extra)."""
