"""hef_compiler: compile the reference ONNX model for a Hailo-8 or for CPU.

Entry point: ``hef-compile`` (see :mod:`hef_compiler.cli`).
"""

from __future__ import annotations

NAME = "hef_compiler"
__version__ = "0.1.0"
