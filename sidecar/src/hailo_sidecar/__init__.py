"""Inference sidecar: the TCN encoder's HTTP contract over stub, ONNX Runtime and HailoRT."""

__version__ = "0.1.0"
