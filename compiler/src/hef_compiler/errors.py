"""Errors the CLI turns into a message and an exit code (no traceback for these)."""

from __future__ import annotations


class CompileError(Exception):
    """A failure a person can act on. ``exit_code`` is what ``hef-compile`` exits with."""

    exit_code = 1
    kind = "compile"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(CompileError):
    """The model config (hailo_models/*.yaml) is missing or invalid."""

    exit_code = 2
    kind = "config"


class ModelValidationError(CompileError):
    """The ONNX file is missing, corrupt, or does not match the config and the contract."""

    exit_code = 3
    kind = "onnx"


class ToolchainError(CompileError):
    """The backend toolchain (the Hailo DFC) is missing or failed."""

    exit_code = 4
    kind = "toolchain"


class ParityError(CompileError):
    """The quantised model is too far from the float model."""

    exit_code = 5
    kind = "parity"


class HostError(CompileError):
    """This machine cannot run the compile (not x86_64)."""

    exit_code = 6
    kind = "host"


class CalibrationError(CompileError):
    """The calibration set is missing or has the wrong shape or type."""

    exit_code = 7
    kind = "calibration"
