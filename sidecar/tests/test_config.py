"""Configuration from the environment: defaults, and clear errors that name the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hailo_sidecar.config import Config, ConfigError


def test_defaults() -> None:
    c = Config.from_env({})
    assert c.infer_mode == "stub"
    assert c.num_motifs == 12
    assert c.host == "0.0.0.0"
    assert c.port == 9000
    assert c.log_level == "info"
    assert c.max_body_bytes == 2 * 1024 * 1024
    assert c.max_batch == 64
    assert c.model_manifest is None
    assert c.hailo_device == Path("/dev/hailo0")
    assert c.strict_startup is False
    assert c.models_dir == Path("/models")
    assert (c.model_name, c.model_version) == (None, None)
    assert c.socket_path == Path("/run/hailo-sidecar/sidecar.sock")
    assert (c.ipc_max_frame_bytes, c.ipc_max_connections) == (1024 * 1024, 64)


def test_discovery_and_ipc_settings() -> None:
    c = Config.from_env({
        "INFER_MODE": "hailo", "MODELS_DIR": "/opt/models", "MODEL_NAME": "tcn_encoder",
        "MODEL_VERSION": "0.2.0", "SOCKET_PATH": "/run/x/s.sock", "IPC_MAX_FRAME_BYTES": "65536",
        "IPC_MAX_CONNECTIONS": "4",
    })  # fmt: skip
    assert c.model_manifest is None
    assert (c.models_dir, c.model_name, c.model_version) == (
        Path("/opt/models"), "tcn_encoder", "0.2.0"
    )  # fmt: skip
    assert c.socket_path == Path("/run/x/s.sock")
    assert (c.ipc_max_frame_bytes, c.ipc_max_connections) == (65536, 4)


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_socket_path_turns_ipc_off(value: str) -> None:
    assert Config.from_env({"SOCKET_PATH": value}).socket_path is None
    # Programmatic Config() (tests, embedding) has no socket unless asked.
    assert Config().socket_path is None


def test_full_environment() -> None:
    c = Config.from_env({
        "INFER_MODE": "HAILO", "MODEL_MANIFEST": "/models/manifest.json",
        "HEF_PATH": "/models/x.hef", "NUM_MOTIFS": "8", "HOST": "127.0.0.1", "PORT": "9100",
        "LOG_LEVEL": "DEBUG", "MAX_BODY_BYTES": "65536", "MAX_BATCH": "16",
        "ORT_INTRA_OP_THREADS": "2", "HAILO_DEVICE": "/dev/hailo1", "HAILO_TIMEOUT_MS": "250",
        "STRICT_STARTUP": "yes",
    })  # fmt: skip
    assert c.infer_mode == "hailo"
    assert c.model_path == Path("/models/x.hef")
    assert (c.num_motifs, c.port, c.max_body_bytes, c.max_batch) == (8, 9100, 65536, 16)
    assert c.log_level == "debug"
    assert c.hailo_timeout_ms == 250
    assert c.strict_startup is True


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"INFER_MODE": "gpu"}, "INFER_MODE='gpu' is invalid: expected one of stub, onnx, hailo"),
        ({"NUM_MOTIFS": "twelve"}, "NUM_MOTIFS='twelve' is invalid: expected an integer from 1 "
         "to 4096"),
        ({"NUM_MOTIFS": "0"}, "NUM_MOTIFS='0' is invalid: expected an integer from 1 to 4096"),
        ({"PORT": "70000"}, "PORT='70000' is invalid: expected an integer from 1 to 65535"),
        ({"PORT": "9000.5"}, "PORT='9000.5' is invalid: expected an integer from 1 to 65535"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL='loud' is invalid: expected one of critical, error, "
         "warning, info, debug, trace"),
        ({"MAX_BODY_BYTES": "10"}, "MAX_BODY_BYTES='10' is invalid: expected an integer from 1024 "
         "to 2**30"),
        ({"MAX_BATCH": "-1"}, "MAX_BATCH='-1' is invalid: expected an integer from 1 to 4096"),
        ({"STRICT_STARTUP": "maybe"}, "STRICT_STARTUP='maybe' is invalid: expected one of "
         "1/true/yes/on, 0/false/no/off"),
        ({"INFER_MODE": "onnx"}, "INFER_MODE=onnx needs a model: set MODEL_NAME (and "
         "MODEL_VERSION) to pick one from MODELS_DIR='/models', or MODEL_MANIFEST to name its "
         "manifest (its sha256 is checked before the model is loaded)"),
        ({"INFER_MODE": "hailo", "MODELS_DIR": "/opt/m"}, "INFER_MODE=hailo needs a model: set "
         "MODEL_NAME (and MODEL_VERSION) to pick one from MODELS_DIR='/opt/m', or MODEL_MANIFEST "
         "to name its manifest (its sha256 is checked before the model is loaded)"),
        ({"SOCKET_PATH": "run/s.sock"}, "SOCKET_PATH='run/s.sock' is invalid: expected an "
         "absolute file path of at most 107 bytes (the Unix socket limit), or empty to turn IPC "
         "off"),
        ({"SOCKET_PATH": "/" + "x" * 107}, "SOCKET_PATH='/" + "x" * 107 + "' is invalid: "
         "expected an absolute file path of at most 107 bytes (the Unix socket limit), or empty "
         "to turn IPC off"),
        ({"IPC_MAX_FRAME_BYTES": "100"}, "IPC_MAX_FRAME_BYTES='100' is invalid: expected an "
         "integer from 4096 to 2**30"),
        ({"IPC_MAX_CONNECTIONS": "0"}, "IPC_MAX_CONNECTIONS='0' is invalid: expected an integer "
         "from 1 to 4096"),
        ({"INFER_MODE": "onnx", "MODEL_MANIFEST": "/m.json", "HEF_PATH": "/x.hef"},
         "HEF_PATH is set but INFER_MODE='onnx': HEF_PATH is only used with INFER_MODE=hailo "
         "(use MODEL_PATH for an .onnx artifact)"),
        ({"INFER_MODE": "hailo", "MODEL_MANIFEST": "/m.json", "HEF_PATH": "/a.hef",
          "MODEL_PATH": "/b.hef"},
         "HEF_PATH='/a.hef' and MODEL_PATH='/b.hef' disagree: set one of them"),
    ],
)  # fmt: skip
def test_bad_values_name_the_variable(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError) as exc:
        Config.from_env(env)
    assert exc.value.problems == [problem]


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(ConfigError) as exc:
        Config.from_env({"INFER_MODE": "tpu", "PORT": "x", "NUM_MOTIFS": "0"})
    assert [p.split("=")[0] for p in exc.value.problems] == ["INFER_MODE", "NUM_MOTIFS", "PORT"]


def test_blank_values_mean_the_default() -> None:
    assert Config.from_env({"PORT": "", "INFER_MODE": " ", "MODEL_MANIFEST": ""}).port == 9000


def test_python_m_refuses_to_start_with_a_clear_message() -> None:
    env = {**os.environ, "INFER_MODE": "gpu", "PORT": "http"}
    proc = subprocess.run(
        [sys.executable, "-m", "hailo_sidecar"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "hailo-sidecar: configuration error: INFER_MODE='gpu' is invalid: expected one of stub, "
        "onnx, hailo",
        "hailo-sidecar: configuration error: PORT='http' is invalid: expected an integer from 1 "
        "to 65535",
    ]


def test_load_and_fault_settings() -> None:
    d = Config.from_env({})
    assert (d.unhealthy_after_failures, d.stall_after_ms, d.wedge_exit_after_ms) == (3, 5000, 30000)
    assert (d.max_queue, d.request_deadline_ms, d.retry_after_s) == (32, 2000, 1)
    assert (d.http_max_connections, d.http_max_header_bytes) == (256, 32768)
    assert (d.http_header_timeout_ms, d.http_body_timeout_ms, d.http_keepalive_s) == (
        10000, 10000, 5
    )  # fmt: skip
    assert (d.drain_timeout_ms, d.ipc_required, d.inline_max_windows) == (8000, False, 8)
    c = Config.from_env({
        "UNHEALTHY_AFTER_FAILURES": "5", "STALL_AFTER_MS": "2500", "WEDGE_EXIT_AFTER_MS": "0",
        "MAX_QUEUE": "0", "REQUEST_DEADLINE_MS": "150", "RETRY_AFTER_S": "7",
        "HTTP_MAX_CONNECTIONS": "10", "HTTP_MAX_HEADER_BYTES": "8192",
        "HTTP_HEADER_TIMEOUT_MS": "500", "HTTP_BODY_TIMEOUT_MS": "700", "HTTP_KEEPALIVE_S": "2",
        "DRAIN_TIMEOUT_MS": "3000", "IPC_REQUIRED": "yes", "INLINE_MAX_WINDOWS": "0",
    })  # fmt: skip
    assert (c.unhealthy_after_failures, c.stall_after_ms, c.wedge_exit_after_ms) == (5, 2500, 0)
    assert (c.max_queue, c.request_deadline_ms, c.retry_after_s) == (0, 150, 7)
    assert (c.http_max_connections, c.http_max_header_bytes, c.http_keepalive_s) == (10, 8192, 2)
    assert (c.http_header_timeout_ms, c.http_body_timeout_ms) == (500, 700)
    assert (c.drain_timeout_ms, c.ipc_required, c.inline_max_windows) == (3000, True, 0)
    with pytest.raises(ConfigError) as exc:
        Config.from_env({"STALL_AFTER_MS": "5", "HTTP_MAX_HEADER_BYTES": "10", "IPC_REQUIRED": "?"})
    assert sorted(exc.value.problems) == [
        "HTTP_MAX_HEADER_BYTES='10' is invalid: expected an integer from 1024 to 2**24",
        "IPC_REQUIRED='?' is invalid: expected one of 1/true/yes/on, 0/false/no/off",
        "STALL_AFTER_MS='5' is invalid: expected an integer from 10 to 3600000",
    ]
