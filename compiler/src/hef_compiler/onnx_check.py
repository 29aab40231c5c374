"""Validate the ONNX model before any compile: present, well formed, matching the config
and the contract, and made only of operators the target takes.

All problems found after the model loads are reported together, one per line, so a
person fixes them in one round.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import onnx
from google.protobuf.message import DecodeError

from hef_compiler.config import ModelConfig
from hef_compiler.errors import ModelValidationError
from hef_compiler.ops import supported_summary, unsupported_nodes

_ELEM_FLOAT = onnx.TensorProto.FLOAT


@dataclass(frozen=True)
class ValidatedModel:
    """The checked ONNX model and what the manifest records about it."""

    sha256: str
    model: onnx.ModelProto
    op_types: tuple[str, ...]


def export_hint(cfg: ModelConfig) -> str:
    return (
        "export it first, for the reference model: "
        f"python exports/make_tcn_encoder.py --num-motifs {cfg.num_motifs} --output {cfg.onnx_rel}"
    )


def load_onnx(cfg: ModelConfig) -> tuple[bytes, onnx.ModelProto]:
    path = cfg.onnx_path
    if not path.is_file():
        raise ModelValidationError(
            f"ONNX model not found: {path} (key 'onnx' in {cfg.source}); {export_hint(cfg)}"
        )
    data = path.read_bytes()
    try:
        model = onnx.load_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ModelValidationError(
            f"{path} is not a valid ONNX file (protobuf parse failed: {exc}); {export_hint(cfg)}"
        ) from exc
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelValidationError(
            f"{path} failed onnx.checker: {first}; {export_hint(cfg)}"
        ) from exc
    return data, model


def _shape(value: onnx.ValueInfoProto) -> list[int | str]:
    dims: list[int | str] = []
    for d in value.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(d.dim_value)
        else:
            dims.append(d.dim_param or "?")
    return dims


def _io_problems(
    kind: str,
    values: list[onnx.ValueInfoProto],
    expected: dict[str, tuple[int, ...]],
) -> list[str]:
    problems: list[str] = []
    actual = {v.name: v for v in values}
    for name in expected:
        if name not in actual:
            problems.append(
                f"{kind} '{name}' is in the config but not in the model "
                f"(the model's {kind}s: {', '.join(actual) or 'none'})"
            )
    for name, value in actual.items():
        if name not in expected:
            problems.append(
                f"{kind} '{name}' is in the model but not in the config "
                f"(config {kind}s: {', '.join(expected)})"
            )
            continue
        shape = _shape(value)
        if shape != list(expected[name]):
            problems.append(
                f"{kind} '{name}' has shape {shape} in the model; the config and the contract "
                f"expect {list(expected[name])}"
            )
        elem = value.type.tensor_type.elem_type
        if elem != _ELEM_FLOAT:
            problems.append(
                f"{kind} '{name}' has element type {onnx.TensorProto.DataType.Name(elem)}; "
                "expected FLOAT (float32)"
            )
    return problems


def validate_onnx(cfg: ModelConfig, target: str) -> ValidatedModel:
    """Check the model file against the config, the contract and ``target``'s operators."""
    data, model = load_onnx(cfg)
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    inputs = [v for v in graph.input if v.name not in initializers]
    problems = _io_problems("input", inputs, cfg.inputs)
    problems += _io_problems("output", list(graph.output), cfg.outputs)
    for bad in unsupported_nodes(graph.node, target):
        problems.append(f"{bad.describe()}, which target '{target}' does not support")
    if target == "hailo8":
        node_names = {n.name for n in graph.node}
        for key, names in (
            ("dfc.start_node_names", cfg.dfc.start_node_names),
            ("dfc.end_node_names", cfg.dfc.end_node_names),
        ):
            for name in names:
                if name not in node_names:
                    problems.append(
                        f"config key '{key}' names '{name}', which is not a node in the model"
                    )
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        hint = ""
        if any("does not support" in p for p in problems):
            hint = f"\n(supported on '{target}': {supported_summary(target)})"
        raise ModelValidationError(
            f"{cfg.onnx_path} does not fit config {cfg.source} for target '{target}' "
            f"({len(problems)} problem{'s' if len(problems) != 1 else ''}):\n{lines}{hint}"
        )
    return ValidatedModel(
        sha256=hashlib.sha256(data).hexdigest(),
        model=model,
        op_types=tuple(sorted({n.op_type for n in graph.node})),
    )
