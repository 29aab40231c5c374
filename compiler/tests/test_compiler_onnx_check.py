"""ONNX validation before compile: missing, corrupt, wrong shapes, unsupported ops."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
import pytest
from hef_compiler.config import ModelConfig, load_config
from hef_compiler.errors import ModelValidationError
from hef_compiler.onnx_check import validate_onnx
from hef_compiler.ops import HAILO8_ONNX_OPS
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[2]


def _exporter() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_tcn_encoder", REPO / "exports" / "make_tcn_encoder.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _config(workspace: Path) -> ModelConfig:
    return load_config(workspace / "hailo_models" / "tcn_encoder.yaml", workspace)


def _write(workspace: Path, model: onnx.ModelProto) -> None:
    (workspace / "exports" / "tcn_encoder.onnx").write_bytes(model.SerializeToString())


def _tiny_model(
    head_ops: list[onnx.NodeProto],
    extra_inits: list[TensorProto] | None = None,
    opsets: list[onnx.OperatorSetIdProto] | None = None,
    in_shape: tuple[int, ...] = (1, 100, 9),
) -> onnx.ModelProto:
    """x -> Flatten -> Gemm -> 'pre_latent' -> head_ops (must end in latent and motif_scores)."""
    rng = np.random.default_rng(0)
    flat = int(np.prod(in_shape[1:]))
    inits = [
        numpy_helper.from_array(rng.standard_normal((64, flat)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal((12, 64)).astype(np.float32), "mw"),
        *(extra_inits or []),
    ]
    nodes = [
        helper.make_node("Flatten", ["x"], ["flat"], axis=1, name="flatten"),
        helper.make_node("Gemm", ["flat", "w"], ["pre_latent"], transB=1, name="dense"),
        *head_ops,
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
        [
            helper.make_tensor_value_info("latent", TensorProto.FLOAT, [1, 64]),
            helper.make_tensor_value_info("motif_scores", TensorProto.FLOAT, [1, 12]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=opsets or [helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def test_reference_model_passes_for_both_targets(workspace: Path) -> None:
    cfg = _config(workspace)
    for target in ("cpu", "hailo8"):
        validated = validate_onnx(cfg, target)
        assert len(validated.sha256) == 64
        assert set(validated.op_types) <= HAILO8_ONNX_OPS
        assert "Conv" in validated.op_types


def test_missing_onnx_names_path_and_export_command(workspace: Path) -> None:
    (workspace / "exports" / "tcn_encoder.onnx").unlink()
    with pytest.raises(ModelValidationError) as info:
        validate_onnx(_config(workspace), "cpu")
    message = str(info.value)
    assert f"ONNX model not found: {workspace / 'exports' / 'tcn_encoder.onnx'}" in message
    assert "python exports/make_tcn_encoder.py" in message


@pytest.mark.parametrize(
    "mangle",
    [
        lambda data: b"\x00garbage\xff" * 50,
        lambda data: data[: len(data) // 3],
        lambda data: b"",
    ],
    ids=["garbage", "truncated", "empty"],
)
def test_corrupt_onnx_is_refused(workspace: Path, mangle: Callable[[bytes], bytes]) -> None:
    path = workspace / "exports" / "tcn_encoder.onnx"
    path.write_bytes(mangle(path.read_bytes()))
    with pytest.raises(ModelValidationError) as info:
        validate_onnx(_config(workspace), "cpu")
    message = str(info.value)
    assert str(path) in message
    assert "not a valid ONNX file" in message or "failed onnx.checker" in message
    assert "python exports/make_tcn_encoder.py" in message


def test_checker_failure_is_reported(workspace: Path) -> None:
    # A node that consumes a tensor nobody produces: parses, fails onnx.checker.
    model = _tiny_model(
        [
            helper.make_node("Relu", ["nowhere"], ["latent"], name="bad_relu"),
            helper.make_node("Gemm", ["pre_latent", "mw"], ["motif_scores"], transB=1, name="m"),
        ]
    )
    _write(workspace, model)
    with pytest.raises(ModelValidationError, match=r"failed onnx\.checker"):
        validate_onnx(_config(workspace), "cpu")


def test_wrong_motif_count_and_names_are_all_reported(workspace: Path) -> None:
    # The reference exporter with 8 motifs while the config (and so the sidecar) says 12.
    _write(workspace, _exporter().build_model(num_motifs=8))
    with pytest.raises(ModelValidationError) as info:
        validate_onnx(_config(workspace), "cpu")
    message = str(info.value)
    assert "output 'motif_scores' has shape [1, 8] in the model" in message
    assert "expect [1, 12]" in message


def test_wrong_input_shape_and_extra_output(workspace: Path) -> None:
    model = _tiny_model(
        [
            helper.make_node("Relu", ["pre_latent"], ["latent"], name="act"),
            helper.make_node("Gemm", ["latent", "mw"], ["motif_scores"], transB=1, name="m"),
        ],
        in_shape=(1, 50, 9),
    )
    model.graph.output.append(helper.make_tensor_value_info("debug", TensorProto.FLOAT, [1, 64]))
    model.graph.node.append(helper.make_node("Identity", ["latent"], ["debug"], name="dbg"))
    _write(workspace, model)
    with pytest.raises(ModelValidationError) as info:
        validate_onnx(_config(workspace), "cpu")
    message = str(info.value)
    assert "input 'x' has shape [1, 50, 9] in the model" in message
    assert "the config and the contract expect [1, 100, 9]" in message
    assert "output 'debug' is in the model but not in the config" in message
    assert "2 problems" in message


def test_symbolic_batch_dimension_is_a_shape_mismatch(workspace: Path) -> None:
    model = onnx.load(REPO / "exports" / "tcn_encoder.onnx")
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    dim.Clear()
    dim.dim_param = "batch"
    _write(workspace, model)
    with pytest.raises(ModelValidationError, match=r"shape \['batch', 100, 9\]"):
        validate_onnx(_config(workspace), "cpu")


def test_unsupported_ops_for_hailo8_each_named_with_its_node(workspace: Path) -> None:
    axis = numpy_helper.from_array(np.array(1, dtype=np.int64), "axis")
    model = _tiny_model(
        [
            helper.make_node("Hardmax", ["pre_latent"], ["hard"], axis=1, name="winner_take_all"),
            helper.make_node("CumSum", ["hard", "axis"], ["latent"], name="running_total"),
            helper.make_node("Gemm", ["latent", "mw"], ["motif_scores"], transB=1, name="m"),
        ],
        extra_inits=[axis],
    )
    _write(workspace, model)
    cfg = _config(workspace)
    # CPU takes standard ops (and the hailo8 DFC node names are not checked for cpu).
    validate_onnx(cfg, "cpu")
    with pytest.raises(ModelValidationError) as info:
        validate_onnx(cfg, "hailo8")
    message = str(info.value)
    assert "node 'winner_take_all' uses Hardmax, which target 'hailo8' does not support" in message
    assert "node 'running_total' uses CumSum, which target 'hailo8' does not support" in message
    assert "supported on 'hailo8'" in message
    # The config's DFC start/end nodes are not in this graph either: said too.
    assert "'dfc.start_node_names' names 'tcn0_conv'" in message


def test_custom_domain_op_is_unsupported_on_cpu(workspace: Path) -> None:
    model = _tiny_model(
        [
            helper.make_node(
                "FancyNorm", ["pre_latent"], ["latent"], name="fancy", domain="com.example"
            ),
            helper.make_node("Gemm", ["latent", "mw"], ["motif_scores"], transB=1, name="m"),
        ],
        opsets=[helper.make_opsetid("", 13), helper.make_opsetid("com.example", 1)],
    )
    _write(workspace, model)
    with pytest.raises(ModelValidationError) as info:
        validate_onnx(_config(workspace), "cpu")
    assert "node 'fancy' uses com.example::FancyNorm, which target 'cpu' does not support" in str(
        info.value
    )


def test_wrong_element_type(workspace: Path) -> None:
    model = onnx.load(REPO / "exports" / "tcn_encoder.onnx")
    model.graph.output[0].type.tensor_type.elem_type = TensorProto.DOUBLE
    _write(workspace, model)
    with pytest.raises(ModelValidationError, match=r"element type|failed onnx.checker"):
        validate_onnx(_config(workspace), "cpu")
