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
DEFAULT_MODELS_DIR: Final = Path("/models")
DEFAULT_SOCKET_PATH: Final = Path("/run/hailo-sidecar/sidecar.sock")
# sun_path holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH_BYTES: Final = 107

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
    # Discovery (when MODEL_MANIFEST is not set): MODELS_DIR/*/*.manifest.json.
    models_dir: Path = DEFAULT_MODELS_DIR
    model_name: str | None = None
    model_version: str | None = None
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
    # The Unix-socket IPC server. None: off. Config() leaves it off (tests, embedding);
    # from_env() defaults to DEFAULT_SOCKET_PATH and SOCKET_PATH="" turns it off.
    socket_path: Path | None = None
    ipc_max_frame_bytes: int = 1024 * 1024
    ipc_max_connections: int = 64
    # IPC_REQUIRED: a socket that cannot be created makes the sidecar not ready (else it
    # is reported on /readyz and in metrics while HTTP serves on).
    ipc_required: bool = False
    # Health (health.py): /healthz and /readyz turn 503 after this many consecutive
    # failed backend calls, or while a call has been running longer than stall_after_ms;
    # unhealthy for wedge_exit_after_ms in a row -> the process exits (status 4); 0: never.
    unhealthy_after_failures: int = 3
    stall_after_ms: int = 5000
    wedge_exit_after_ms: int = 30000
    # Admission (admission.py): one backend call at a time, at most max_queue waiting;
    # each request must start and finish within request_deadline_ms; beyond: 503.
    max_queue: int = 32
    request_deadline_ms: int = 2000
    retry_after_s: int = 1
    # Windows per call run on the event loop (stub, onnx); bigger batches go to the
    # backend thread so /healthz and small requests are not stalled behind them.
    inline_max_windows: int = 8
    # HTTP connection limits (http_server.py).
    http_max_connections: int = 256
    http_max_header_bytes: int = 32 * 1024
    http_header_timeout_ms: int = 10_000
    http_body_timeout_ms: int = 10_000
    http_keepalive_s: int = 5
    # SIGTERM: readiness 503 at once, then up to drain_timeout_ms for in-flight work.
    drain_timeout_ms: int = 8000
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
        models_dir = get("MODELS_DIR", Path, DEFAULT_MODELS_DIR, "a directory path")
        model_name = get("MODEL_NAME", str, None, "a model name")
        model_version = get("MODEL_VERSION", str, None, "a model version")
        if mode != "stub" and manifest is None and model_name is None:
            problems.append(
                f"INFER_MODE={mode} needs a model: set MODEL_NAME (and MODEL_VERSION) to pick "
                f"one from MODELS_DIR={str(models_dir)!r}, or MODEL_MANIFEST to name its "
                "manifest (its sha256 is checked before the model is loaded)"
            )
        socket_path = socket_path_from(env, problems, sources)
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
            models_dir=models_dir,
            model_name=model_name,
            model_version=model_version,
            socket_path=socket_path,
            ipc_max_frame_bytes=get(
                "IPC_MAX_FRAME_BYTES",
                integer(4096, 1 << 30),
                1024 * 1024,
                "an integer from 4096 to 2**30",
            ),
            ipc_max_connections=get(
                "IPC_MAX_CONNECTIONS", integer(1, 4096), 64, "an integer from 1 to 4096"
            ),
            ipc_required=get(
                "IPC_REQUIRED", boolean, False, "one of 1/true/yes/on, 0/false/no/off"
            ),
            unhealthy_after_failures=get(
                "UNHEALTHY_AFTER_FAILURES", integer(1, 1_000_000), 3, "an integer from 1 to 1000000"
            ),
            stall_after_ms=get(
                "STALL_AFTER_MS", integer(10, 3_600_000), 5000, "an integer from 10 to 3600000"
            ),
            wedge_exit_after_ms=get(
                "WEDGE_EXIT_AFTER_MS",
                integer(0, 86_400_000),
                30000,
                "an integer from 0 (never) to 86400000",
            ),
            max_queue=get("MAX_QUEUE", integer(0, 100_000), 32, "an integer from 0 to 100000"),
            request_deadline_ms=get(
                "REQUEST_DEADLINE_MS", integer(1, 3_600_000), 2000, "an integer from 1 to 3600000"
            ),
            retry_after_s=get("RETRY_AFTER_S", integer(0, 3600), 1, "an integer from 0 to 3600"),
            inline_max_windows=get(
                "INLINE_MAX_WINDOWS", integer(0, 4096), 8, "an integer from 0 to 4096"
            ),
            http_max_connections=get(
                "HTTP_MAX_CONNECTIONS", integer(1, 100_000), 256, "an integer from 1 to 100000"
            ),
            http_max_header_bytes=get(
                "HTTP_MAX_HEADER_BYTES",
                integer(1024, 1 << 24),
                32 * 1024,
                "an integer from 1024 to 2**24",
            ),
            http_header_timeout_ms=get(
                "HTTP_HEADER_TIMEOUT_MS",
                integer(10, 3_600_000),
                10_000,
                "an integer from 10 to 3600000",
            ),
            http_body_timeout_ms=get(
                "HTTP_BODY_TIMEOUT_MS",
                integer(10, 3_600_000),
                10_000,
                "an integer from 10 to 3600000",
            ),
            http_keepalive_s=get(
                "HTTP_KEEPALIVE_S", integer(1, 3600), 5, "an integer from 1 to 3600"
            ),
            drain_timeout_ms=get(
                "DRAIN_TIMEOUT_MS", integer(0, 3_600_000), 8000, "an integer from 0 to 3600000"
            ),
            sources=sources,
        )
        if problems:
            raise ConfigError(problems)
        return config


def socket_path_from(
    env: Mapping[str, str], problems: list[str], sources: dict[str, str]
) -> Path | None:
    """SOCKET_PATH: unset -> the default; set but empty -> IPC off; else an absolute path."""
    raw = env.get("SOCKET_PATH")
    if raw is None:
        return DEFAULT_SOCKET_PATH
    sources["SOCKET_PATH"] = raw
    value = raw.strip()
    if not value:
        return None
    path = Path(value)
    too_long = len(os.fsencode(value)) > MAX_SOCKET_PATH_BYTES
    if not path.is_absolute() or too_long or path.name in ("", ".", ".."):
        problems.append(
            f"SOCKET_PATH={raw!r} is invalid: expected an absolute file path of at most "
            f"{MAX_SOCKET_PATH_BYTES} bytes (the Unix socket limit), or empty to turn IPC off"
        )
        return None
    return path
