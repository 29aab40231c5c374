"""The model config (``hailo_models/<model>.yaml``): load, validate, normalise.

Every error names the file, the key (dotted path) and what is allowed, so a person can
fix the YAML without reading this code. Unknown keys are errors too (typos would
otherwise be silently ignored).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hef_compiler import contract
from hef_compiler.errors import ConfigError

SCHEMA_VERSION = 1
TARGETS = ("cpu", "hailo8")
# The Hailo-8 family's chips; both take a .hef from the same DFC and HailoRT (target
# hailo8). A HEF runs on the chip it was compiled for; HailoRT also runs a hailo8l HEF
# on a Hailo-8 ("Hailo8 can work with Hailo8L configurations": hailo-ai/hailort,
# libhailort, VdmaConfigManager::add_hef), not the other way round: the AI Kit and the
# 13-TOPS AI HAT+ (Hailo-8L) need hw_arch hailo8l.
HW_ARCHS = ("hailo8", "hailo8l")
_MODEL_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_NET_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_VERSION_RE = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?$")

_TOP_KEYS = {
    "schema": "1",
    "model": "artifact name stem, [a-z][a-z0-9_]*",
    "version": "semantic version X.Y.Z",
    "onnx": "path to the ONNX file, relative to the repo root",
    "net_name": "network name given to the DFC",
    "hw_arch": "|".join(HW_ARCHS),
    "target": "|".join(TARGETS),
    "inputs": "{name: shape}",
    "outputs": "{name: shape}",
    "dfc": "{start_node_names, end_node_names, model_script, optimization_level}",
    "calibration": "{generate: {windows, seed}} or {path: file.npy}",
    "parity": "{max_abs_error, min_cosine_similarity, holdout}",
    "golden": "{windows, seed}",
}
_REQUIRED_TOP = ("schema", "model", "version", "onnx", "net_name", "hw_arch", "inputs", "outputs")


@dataclass(frozen=True)
class DfcOptions:
    """What the Hailo DFC parser needs beyond the ONNX file."""

    start_node_names: tuple[str, ...]
    end_node_names: tuple[str, ...]
    model_script: Path | None
    optimization_level: int | None = None


@dataclass(frozen=True)
class CalibrationSpec:
    """Where the calibration windows come from: generated from a seed, or a .npy file."""

    windows: int | None = None
    seed: int | None = None
    path: Path | None = None

    @property
    def generated(self) -> bool:
        return self.path is None


@dataclass(frozen=True)
class ParitySpec:
    """Thresholds for quantised-vs-float parity, per output, and the held-out windows."""

    max_abs_error: dict[str, float]
    min_cosine_similarity: dict[str, float]
    holdout_windows: int
    holdout_seed: int

    def thresholds(self) -> dict[str, dict[str, float]]:
        return {
            "max_abs_error": dict(self.max_abs_error),
            "min_cosine_similarity": dict(self.min_cosine_similarity),
        }


@dataclass(frozen=True)
class GoldenSpec:
    """The golden vectors written beside the artifact: how many seeded windows."""

    windows: int
    seed: int


@dataclass(frozen=True)
class ModelConfig:
    """A validated model config. Paths are absolute."""

    source: Path
    sha256: str
    model: str
    version: str
    onnx_path: Path
    onnx_rel: str
    net_name: str
    hw_arch: str
    target: str
    inputs: dict[str, tuple[int, ...]]
    outputs: dict[str, tuple[int, ...]]
    dfc: DfcOptions
    calibration: CalibrationSpec
    parity: ParitySpec
    golden: GoldenSpec

    @property
    def num_motifs(self) -> int:
        return self.outputs[contract.MOTIF_OUTPUT][-1]

    @property
    def input_name(self) -> str:
        return next(iter(self.inputs))

    def hw_arch_for(self, target: str) -> str | None:
        """The manifest's ``hw_arch``: the Hailo chip a ``hailo8`` artifact is compiled for
        (``hailo8`` or ``hailo8l``); ``None`` for ``cpu``, which targets no Hailo chip."""
        return self.hw_arch if target == "hailo8" else None

    def artifact_name(self, target: str) -> str:
        return f"{self.model}-{self.version}.{'hef' if target == 'hailo8' else 'onnx'}"

    @property
    def manifest_name(self) -> str:
        return f"{self.model}-{self.version}.manifest.json"

    @property
    def golden_name(self) -> str:
        return f"{self.model}-{self.version}.golden.json"


class _Ctx:
    """Formats errors as '<file>: key '<dotted.key>': <problem>'."""

    def __init__(self, source: Path) -> None:
        self.source = source

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: key '{key}': {problem}")


def load_config(path: Path, repo_root: Path) -> ModelConfig:
    """Read and validate a model config; relative paths are taken from ``repo_root``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"model config not found: {path} (expected a YAML file such as "
            "hailo_models/tcn_encoder.yaml; paths are relative to the working directory)"
        )
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return parse_config(
        data, source=path, sha256=hashlib.sha256(raw).hexdigest(), repo_root=repo_root
    )


def parse_config(
    data: Mapping[str, Any], *, source: Path, sha256: str, repo_root: Path
) -> ModelConfig:
    ctx = _Ctx(source)
    _no_unknown(ctx, "", data, _TOP_KEYS)
    for key in _REQUIRED_TOP:
        if key not in data:
            raise ctx.fail(key, f"missing; required ({_TOP_KEYS[key]})")
    if data["schema"] != SCHEMA_VERSION or isinstance(data["schema"], bool):
        raise ctx.fail("schema", f"{data['schema']!r} is not supported; allowed values: 1")
    model = _string(ctx, "model", data["model"])
    if not _MODEL_RE.match(model):
        raise ctx.fail("model", f"{model!r} is not allowed; use lower-case [a-z][a-z0-9_]*")
    version = _string(ctx, "version", data["version"])
    if not _VERSION_RE.match(version):
        raise ctx.fail("version", f"{version!r} is not a semantic version X.Y.Z (e.g. 0.1.0)")
    onnx_rel = _string(ctx, "onnx", data["onnx"])
    if not onnx_rel.endswith(".onnx"):
        raise ctx.fail("onnx", f"{onnx_rel!r} must name a .onnx file")
    net_name = _string(ctx, "net_name", data["net_name"])
    if not _NET_RE.match(net_name):
        raise ctx.fail("net_name", f"{net_name!r} is not allowed; use [A-Za-z][A-Za-z0-9_]*")
    hw_arch = _choice(ctx, "hw_arch", data["hw_arch"], HW_ARCHS)
    target = _choice(ctx, "target", data.get("target", "cpu"), TARGETS)
    inputs = _shapes(ctx, "inputs", data["inputs"])
    outputs = _shapes(ctx, "outputs", data["outputs"])
    _check_contract(ctx, inputs, outputs)
    dfc = _dfc(ctx, data.get("dfc", {}), inputs, outputs, repo_root)
    calibration = _calibration(ctx, data.get("calibration", {"generate": {}}), repo_root)
    parity = _parity(ctx, data.get("parity", {}), outputs)
    golden = _golden(ctx, data.get("golden", {}))
    return ModelConfig(
        source=source,
        sha256=sha256,
        model=model,
        version=version,
        onnx_path=_resolve(repo_root, onnx_rel),
        onnx_rel=onnx_rel,
        net_name=net_name,
        hw_arch=hw_arch,
        target=target,
        inputs=inputs,
        outputs=outputs,
        dfc=dfc,
        calibration=calibration,
        parity=parity,
        golden=golden,
    )


def _resolve(root: Path, rel: str) -> Path:
    p = Path(rel)
    return p if p.is_absolute() else (root / p)


def _no_unknown(
    ctx: _Ctx, prefix: str, data: Mapping[str, Any], allowed: Mapping[str, str]
) -> None:
    for key in data:
        if key not in allowed:
            name = f"{prefix}{key}"
            raise ctx.fail(name, f"unknown key; allowed keys here: {', '.join(allowed)}")


def _mapping(ctx: _Ctx, key: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ctx.fail(key, f"expected a mapping, got {type(value).__name__} {value!r}")
    return value


def _string(ctx: _Ctx, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ctx.fail(key, f"expected a non-empty string, got {value!r}")
    return value


def _choice(ctx: _Ctx, key: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ctx.fail(key, f"{value!r} is not allowed; allowed values: {', '.join(allowed)}")
    return str(value)


def _int(ctx: _Ctx, key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ctx.fail(key, f"expected an integer >= {minimum}, got {value!r}")
    return value


def _number(ctx: _Ctx, key: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ctx.fail(key, f"expected a number in [{low}, {high}], got {value!r}")
    if not low <= float(value) <= high:
        raise ctx.fail(key, f"{value!r} is out of range; allowed: [{low}, {high}]")
    return float(value)


def _names(ctx: _Ctx, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ctx.fail(key, f"expected a non-empty list of node names, got {value!r}")
    return tuple(_string(ctx, f"{key}[{i}]", v) for i, v in enumerate(value))


def _shapes(ctx: _Ctx, key: str, value: Any) -> dict[str, tuple[int, ...]]:
    m = _mapping(ctx, key, value)
    if not m:
        raise ctx.fail(key, "expected at least one {name: shape} entry")
    out: dict[str, tuple[int, ...]] = {}
    for name, shape in m.items():
        k = f"{key}.{name}"
        if not isinstance(shape, list) or not shape:
            raise ctx.fail(k, f"expected a shape as a list of positive integers, got {shape!r}")
        out[str(name)] = tuple(_int(ctx, f"{k}[{i}]", d, 1) for i, d in enumerate(shape))
    return out


def _check_contract(
    ctx: _Ctx, inputs: dict[str, tuple[int, ...]], outputs: dict[str, tuple[int, ...]]
) -> None:
    want_in = list(contract.INPUT_SHAPE)
    if len(inputs) != 1:
        raise ctx.fail("inputs", f"the contract has exactly one input of shape {want_in}")
    name, shape = next(iter(inputs.items()))
    if shape != contract.INPUT_SHAPE:
        raise ctx.fail(
            f"inputs.{name}",
            f"shape {list(shape)} breaks the contract: one window is {want_in} "
            f"(batch 1, {contract.WINDOW} samples, {contract.CHANNELS} channels)",
        )
    wanted = (contract.LATENT_OUTPUT, contract.MOTIF_OUTPUT)
    if set(outputs) != set(wanted):
        raise ctx.fail(
            "outputs",
            f"the contract's outputs are exactly {', '.join(wanted)}; got {', '.join(outputs)}",
        )
    latent = outputs[contract.LATENT_OUTPUT]
    if latent != (1, contract.LATENT):
        raise ctx.fail(
            f"outputs.{contract.LATENT_OUTPUT}",
            f"shape {list(latent)} breaks the contract; allowed: [1, {contract.LATENT}]",
        )
    motifs = outputs[contract.MOTIF_OUTPUT]
    if len(motifs) != 2 or motifs[0] != 1:
        raise ctx.fail(
            f"outputs.{contract.MOTIF_OUTPUT}",
            f"shape {list(motifs)} breaks the contract; allowed: [1, NUM_MOTIFS]",
        )


_DFC_KEYS = {
    "start_node_names": "ONNX node names where the DFC parser starts",
    "end_node_names": "ONNX node names where the DFC parser ends",
    "model_script": "optional .alls model script, relative to the repo root",
    "optimization_level": "0 to 4: the DFC's model_optimization_flavor(optimization_level=N)",
}


def _dfc(
    ctx: _Ctx,
    value: Any,
    inputs: dict[str, tuple[int, ...]],
    outputs: dict[str, tuple[int, ...]],
    repo_root: Path,
) -> DfcOptions:
    m = _mapping(ctx, "dfc", value)
    _no_unknown(ctx, "dfc.", m, _DFC_KEYS)
    start = _names(ctx, "dfc.start_node_names", m.get("start_node_names", list(inputs)))
    end = _names(ctx, "dfc.end_node_names", m.get("end_node_names", list(outputs)))
    script = m.get("model_script")
    script_path = None
    if script is not None:
        rel = _string(ctx, "dfc.model_script", script)
        if not rel.endswith(".alls"):
            raise ctx.fail("dfc.model_script", f"{rel!r} must name a .alls model script")
        script_path = _resolve(repo_root, rel)
    level = m.get("optimization_level")
    if level is not None and (
        isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 4
    ):
        raise ctx.fail("dfc.optimization_level", f"expected an integer from 0 to 4, got {level!r}")
    return DfcOptions(
        start_node_names=start,
        end_node_names=end,
        model_script=script_path,
        optimization_level=level,
    )


def _calibration(ctx: _Ctx, value: Any, repo_root: Path) -> CalibrationSpec:
    m = _mapping(ctx, "calibration", value)
    _no_unknown(ctx, "calibration.", m, {"generate": "{windows, seed}", "path": "file.npy"})
    if ("generate" in m) == ("path" in m):
        raise ctx.fail(
            "calibration",
            "give exactly one of 'generate: {windows: N, seed: S}' or 'path: windows.npy'",
        )
    if "path" in m:
        rel = _string(ctx, "calibration.path", m["path"])
        if not rel.endswith(".npy"):
            raise ctx.fail(
                "calibration.path", f"{rel!r} must name a .npy file of (N, 100, 9) float32"
            )
        return CalibrationSpec(path=_resolve(repo_root, rel))
    gen = _mapping(ctx, "calibration.generate", m["generate"] or {})
    _no_unknown(ctx, "calibration.generate.", gen, {"windows": "int >= 8", "seed": "int >= 0"})
    windows = _int(ctx, "calibration.generate.windows", gen.get("windows", 256), 8)
    seed = _int(ctx, "calibration.generate.seed", gen.get("seed", 0), 0)
    return CalibrationSpec(windows=windows, seed=seed)


_PARITY_KEYS = {
    "max_abs_error": "number or {output: number} (>= 0)",
    "min_cosine_similarity": "number or {output: number} in [-1, 1]",
    "holdout": "{windows, seed}",
}


def _per_output(
    ctx: _Ctx, key: str, value: Any, outputs: dict[str, tuple[int, ...]], low: float, high: float
) -> dict[str, float]:
    if isinstance(value, dict):
        _no_unknown(ctx, f"{key}.", value, {name: "threshold" for name in outputs})
        missing = [name for name in outputs if name not in value]
        if missing:
            raise ctx.fail(key, f"missing a threshold for output(s) {', '.join(missing)}")
        return {name: _number(ctx, f"{key}.{name}", value[name], low, high) for name in outputs}
    number = _number(ctx, key, value, low, high)
    return dict.fromkeys(outputs, number)


def _parity(ctx: _Ctx, value: Any, outputs: dict[str, tuple[int, ...]]) -> ParitySpec:
    m = _mapping(ctx, "parity", value)
    _no_unknown(ctx, "parity.", m, _PARITY_KEYS)
    max_abs = _per_output(
        ctx, "parity.max_abs_error", m.get("max_abs_error", 0.05), outputs, 0.0, 1e6
    )
    cos = _per_output(
        ctx,
        "parity.min_cosine_similarity",
        m.get("min_cosine_similarity", 0.99),
        outputs,
        -1.0,
        1.0,
    )
    hold = _mapping(ctx, "parity.holdout", m.get("holdout", {}))
    _no_unknown(ctx, "parity.holdout.", hold, {"windows": "int >= 1", "seed": "int >= 0"})
    return ParitySpec(
        max_abs_error=max_abs,
        min_cosine_similarity=cos,
        holdout_windows=_int(ctx, "parity.holdout.windows", hold.get("windows", 64), 1),
        holdout_seed=_int(ctx, "parity.holdout.seed", hold.get("seed", 1), 0),
    )


def _golden(ctx: _Ctx, value: Any) -> GoldenSpec:
    m = _mapping(ctx, "golden", value)
    _no_unknown(ctx, "golden.", m, {"windows": "int from 1 to 64", "seed": "int >= 0"})
    windows = _int(ctx, "golden.windows", m.get("windows", 8), 1)
    if windows > 64:
        raise ctx.fail("golden.windows", f"{windows} is too many: at most 64 (each gate runs them)")
    return GoldenSpec(windows=windows, seed=_int(ctx, "golden.seed", m.get("seed", 11), 0))
