"""Which ONNX operators each target accepts, checked before any compile starts.

``hailo8``: the ONNX operators the Hailo Dataflow Compiler's parser translates, after
the "Supported layers" / ONNX operator tables of the Hailo Dataflow Compiler User
Guide (3.2x-3.3x releases). The guide itself is a download behind the Hailo
Developer Zone login; this list was taken from the public material that quotes it and
kept conservative (operators the guide lists only for other architectures, or only
under conditions we cannot check here, are left out). The DFC parser stays the
authority: this check exists so that an obviously unsupported graph fails in seconds
with every offending node named, instead of minutes into a DFC run. If your DFC
release supports an operator missing here, add it in one line.

``cpu``: any operator ONNX defines in the default or ``ai.onnx.ml`` domain (ONNX
Runtime implements the standard opsets on CPU); custom domains are refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import onnx
import onnx.defs

HAILO8_ONNX_OPS: frozenset[str] = frozenset(
    {
        # convolution and dense
        "Conv",
        "ConvTranspose",
        "Gemm",
        "MatMul",
        # pooling
        "AveragePool",
        "MaxPool",
        "GlobalAveragePool",
        "GlobalMaxPool",
        # normalisation
        "BatchNormalization",
        "InstanceNormalization",
        "LayerNormalization",
        "LpNormalization",
        # activations
        "Relu",
        "LeakyRelu",
        "PRelu",
        "Elu",
        "Sigmoid",
        "HardSigmoid",
        "HardSwish",
        "Tanh",
        "Softplus",
        "Mish",
        "Clip",
        "Exp",
        "Log",
        "Sqrt",
        "Abs",
        "Neg",
        "Reciprocal",
        "Pow",
        "Erf",
        "Softmax",
        "ArgMax",
        # elementwise
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Max",
        "Min",
        "Sum",
        # reductions
        "ReduceMax",
        "ReduceMean",
        "ReduceSum",
        "ReduceSumSquare",
        "ReduceL2",
        # shape and data movement
        "Concat",
        "Split",
        "Slice",
        "Reshape",
        "Flatten",
        "Transpose",
        "Squeeze",
        "Unsqueeze",
        "Expand",
        "Tile",
        "Pad",
        "Resize",
        "Upsample",
        "DepthToSpace",
        "SpaceToDepth",
        # folded away by the parser
        "Constant",
        "Identity",
        "Dropout",
        "Shape",
        "Gather",
    }
)

_CPU_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")


@dataclass(frozen=True)
class UnsupportedNode:
    name: str
    op_type: str
    domain: str

    def describe(self) -> str:
        op = (
            f"{self.domain}::{self.op_type}" if self.domain not in ("", "ai.onnx") else self.op_type
        )
        return f"node '{self.name or '<unnamed>'}' uses {op}"


def _cpu_supported(node: onnx.NodeProto) -> bool:
    return node.domain in _CPU_DOMAINS and onnx.defs.has(node.op_type, node.domain)


def _hailo8_supported(node: onnx.NodeProto) -> bool:
    return node.domain in ("", "ai.onnx") and node.op_type in HAILO8_ONNX_OPS


def unsupported_nodes(nodes: Iterable[onnx.NodeProto], target: str) -> list[UnsupportedNode]:
    """Every node whose operator ``target`` does not take, in graph order."""
    check = _hailo8_supported if target == "hailo8" else _cpu_supported
    return [UnsupportedNode(n.name, n.op_type, n.domain) for n in nodes if not check(n)]


def supported_summary(target: str) -> str:
    if target == "hailo8":
        return "the Hailo DFC ONNX operator list in hef_compiler/ops.py"
    return "standard ONNX operators (default and ai.onnx.ml domains)"
