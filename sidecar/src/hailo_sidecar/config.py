"""Configuration from the environment, validated once at start-up.

Every problem is reported at once, each naming the variable, what it got and what
it accepts, so a bad deployment fails with one actionable message. No secrets live
here: the sidecar needs none.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeVar

MODES: Final = ("stub", "onnx", "hailo")
LOG_LEVELS: Final = ("critical", "error", "warning", "info", "debug", "trace")
_TRUE: Final = ("1", "true", "yes", "on")
_FALSE: Final = ("0", "false", "no", "off", "")

T = TypeVar("T")


class ConfigError(ValueError):
    """One or more environment variables are missing or invalid."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Config:
    infer_mode: str = "stub"
    model_manifest: Path | None = None
    model_path: Path | None = None
    num_motifs: int = 12
    host: str = "0.0.0.0"
    port: int = 9000
    log_level: str = "info"
    max_body_bytes: int = 2 * 1024 * 1024
    max_batch: int = 64
    ort_intra_op_threads: int = 1
    hailo_device: Path = Path("/dev/hailo0")
    hailo_timeout_ms: int = 1000
    strict_startup: bool = False
    # Where each value came from, for the start-up log line.
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        env = os.environ if environ is None else environ
        problems: list[str] = []
        sources: dict[str, str] = {}

        def get(name: str, parse: Callable[[str], T], default: T, expect: str) -> T:
            raw = env.get(name)
            if raw is None or not raw.strip():
                return default
            sources[name] = raw
            try:
                return parse(raw.strip())
            except ValueError:
                problems.append(f"{name}={raw!r} is invalid: expected {expect}")
                return default

        def integer(lo: int, hi: int) -> Callable[[str], int]:
            def parse(raw: str) -> int:
                value = int(raw, 10)
                if not lo <= value <= hi:
                    raise ValueError(raw)
                return value

            return parse

        def choice(options: tuple[str, ...]) -> Callable[[str], str]:
            def parse(raw: str) -> str:
                if raw.lower() not in options:
                    raise ValueError(raw)
                return raw.lower()

            return parse

        def boolean(raw: str) -> bool:
            if raw.lower() in _TRUE:
                return True
            if raw.lower() in _FALSE:
                return False
            raise ValueError(raw)

        mode = get("INFER_MODE", choice(MODES), "stub", "one of " + ", ".join(MODES))
        manifest = get("MODEL_MANIFEST", Path, None, "a path to the model's manifest.json")
        model_path = get("MODEL_PATH", Path, None, "a path to the model artifact")
        hef_path = get("HEF_PATH", Path, None, "a path to the .hef artifact")
        if hef_path is not None:
            if mode != "hailo":
                problems.append(
                    f"HEF_PATH is set but INFER_MODE={mode!r}: HEF_PATH is only used with "
                    "INFER_MODE=hailo (use MODEL_PATH for an .onnx artifact)"
                )
            elif model_path is not None and model_path != hef_path:
                problems.append(
                    f"HEF_PATH={str(hef_path)!r} and MODEL_PATH={str(model_path)!r} disagree: "
                    "set one of them"
                )
            model_path = hef_path
        if mode != "stub" and manifest is None:
            problems.append(
                f"MODEL_MANIFEST is not set: INFER_MODE={mode} needs the model's manifest.json "
                "(its sha256 is checked before the model is loaded)"
            )
        config = cls(
            infer_mode=mode,
            model_manifest=manifest,
            model_path=model_path,
            num_motifs=get("NUM_MOTIFS", integer(1, 4096), 12, "an integer from 1 to 4096"),
            host=get("HOST", str, "0.0.0.0", "a host name or address"),
            port=get("PORT", integer(1, 65535), 9000, "an integer from 1 to 65535"),
            log_level=get(
                "LOG_LEVEL", choice(LOG_LEVELS), "info", "one of " + ", ".join(LOG_LEVELS)
            ),
            max_body_bytes=get(
                "MAX_BODY_BYTES",
                integer(1024, 1 << 30),
                2 * 1024 * 1024,
                "an integer from 1024 to 2**30",
            ),
            max_batch=get("MAX_BATCH", integer(1, 4096), 64, "an integer from 1 to 4096"),
            ort_intra_op_threads=get(
                "ORT_INTRA_OP_THREADS",
                integer(0, 256),
                1,
                "an integer from 0 (onnxruntime's default) to 256",
            ),
            hailo_device=get("HAILO_DEVICE", Path, Path("/dev/hailo0"), "a device path"),
            hailo_timeout_ms=get(
                "HAILO_TIMEOUT_MS", integer(1, 600_000), 1000, "an integer from 1 to 600000"
            ),
            strict_startup=get(
                "STRICT_STARTUP", boolean, False, "one of 1/true/yes/on, 0/false/no/off"
            ),
            sources=sources,
        )
        if problems:
            raise ConfigError(problems)
        return config
