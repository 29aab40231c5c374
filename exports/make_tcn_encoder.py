"""Write the reference model, exports/tcn_encoder.onnx.

A small dilated temporal-convolution encoder with deterministic weights, built
directly as an ONNX graph (no training framework needed):

    x (1, 100, 9)  ->  Transpose + Reshape to NCHW (1, 9, 1, 100)
    -> 4 x [Conv 1xk (dilation 1, 2, 4, 8, "same" padding) + Relu]
    -> GlobalAveragePool -> Flatten -> Gemm            => latent (1, 64)
    -> Gemm -> Sigmoid                                  => motif_scores (1, NUM_MOTIFS)

Written so the Hailo Dataflow Compiler can take it: Conv with (1, k) kernels
instead of Conv1d, only standard ops, opset 13, IR version 8. The same seed and
arguments always give the same bytes, so the file's sha256 is stable.

    python exports/make_tcn_encoder.py [--num-motifs 12] [--output exports/tcn_encoder.onnx]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

WINDOW = 100
CHANNELS = 9
LATENT = 64
OPSET = 13
IR_VERSION = 8
# (in channels, out channels, kernel width, dilation) per temporal block.
BLOCKS = ((CHANNELS, 32, 3, 1), (32, 32, 3, 2), (32, 64, 3, 4), (64, LATENT, 3, 8))


def _he(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def build_model(num_motifs: int = 12, seed: int = 20261123) -> onnx.ModelProto:
    if num_motifs < 1:
        raise ValueError(f"num_motifs must be at least 1, got {num_motifs}")
    rng = np.random.default_rng(seed)
    inits: list[TensorProto] = [
        numpy_helper.from_array(np.array([1, CHANNELS, 1, WINDOW], dtype=np.int64), "nchw_shape")
    ]
    nodes = [
        helper.make_node("Transpose", ["x"], ["x_t"], perm=[0, 2, 1], name="to_channels_first"),
        helper.make_node("Reshape", ["x_t", "nchw_shape"], ["h0"], name="to_nchw"),
    ]
    for i, (c_in, c_out, k, dilation) in enumerate(BLOCKS):
        w, b = f"conv{i}_w", f"conv{i}_b"
        inits.append(numpy_helper.from_array(_he(rng, (c_out, c_in, 1, k), c_in * k), w))
        inits.append(numpy_helper.from_array(np.zeros(c_out, dtype=np.float32) + 0.01, b))
        pad = dilation * (k - 1) // 2
        nodes.append(
            helper.make_node(
                "Conv",
                [f"h{i}", w, b],
                [f"c{i}"],
                kernel_shape=[1, k],
                dilations=[1, dilation],
                pads=[0, pad, 0, pad],
                strides=[1, 1],
                name=f"tcn{i}_conv",
            )
        )
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"h{i + 1}"], name=f"tcn{i}_relu"))
    last = f"h{len(BLOCKS)}"
    inits += [
        numpy_helper.from_array(_he(rng, (LATENT, LATENT), LATENT), "latent_w"),
        numpy_helper.from_array(np.zeros(LATENT, dtype=np.float32), "latent_b"),
        numpy_helper.from_array(_he(rng, (num_motifs, LATENT), LATENT), "motif_w"),
        numpy_helper.from_array(np.zeros(num_motifs, dtype=np.float32), "motif_b"),
    ]
    nodes += [
        helper.make_node("GlobalAveragePool", [last], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["features"], axis=1, name="flatten"),
        helper.make_node(
            "Gemm", ["features", "latent_w", "latent_b"], ["latent"], transB=1, name="latent_head"
        ),
        helper.make_node(
            "Gemm", ["latent", "motif_w", "motif_b"], ["motif_logits"], transB=1, name="motif_head"
        ),
        helper.make_node("Sigmoid", ["motif_logits"], ["motif_scores"], name="motif_prob"),
    ]
    graph = helper.make_graph(
        nodes,
        "tcn_encoder",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, WINDOW, CHANNELS])],
        [
            helper.make_tensor_value_info("latent", TensorProto.FLOAT, [1, LATENT]),
            helper.make_tensor_value_info("motif_scores", TensorProto.FLOAT, [1, num_motifs]),
        ],
        inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="hailo-pipeline/exports/make_tcn_encoder.py",
        producer_version="1",
    )
    model.ir_version = IR_VERSION
    model.doc_string = (
        f"Reference TCN encoder: x(1,{WINDOW},{CHANNELS}) -> "
        f"latent(1,{LATENT}), motif_scores(1,{num_motifs})"
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-motifs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("tcn_encoder.onnx"))
    args = parser.parse_args(argv)
    model = build_model(args.num_motifs, args.seed)
    tmp = args.output.with_suffix(".onnx.tmp")
    tmp.write_bytes(model.SerializeToString())
    tmp.replace(args.output)
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes, {args.num_motifs} motifs)")


if __name__ == "__main__":
    main()
