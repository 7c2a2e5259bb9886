"""PyTorch → ONNX export of the streaming step graph and the emotion encoder."""
