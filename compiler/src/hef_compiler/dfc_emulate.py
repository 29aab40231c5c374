"""Run windows through the DFC's quantized emulator; run by the DFC's own Python.

    <dfc>/bin/python dfc_emulate.py --har N_optimized.har --windows in.npy \
        --output out.npz --output-width latent=64 --output-width motif_scores=12

Used for the golden windows and for the held-out parity windows.

Standalone on purpose: the DFC's environment has ``hailo_sdk_client`` and numpy but not
this package. Written against the DFC's documented Python API (not run here: the DFC is
not installable in this lab): ``ClientRunner(har=...)``, ``runner.get_hn_model()
.get_input_layers()`` for the parsed input shape (NHWC with the batch as -1), and
``with runner.infer_context(InferenceContext.SDK_QUANTIZED) as ctx: runner.infer(ctx,
data)``, which returns one array per output layer (or one array for one output). The
emulator's output layers carry Hailo layer names, so outputs are matched to the
model's by their width, which must differ.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--har", required=True)
    p.add_argument("--windows", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--output-width", action="append", required=True, metavar="NAME=WIDTH")
    return p


def _input_shape(runner: object, per_window: int) -> tuple[int, ...]:
    """The parsed network's input shape without the batch, e.g. (1, 100, 9) in NHWC."""
    layers = runner.get_hn_model().get_input_layers()  # type: ignore[attr-defined]
    if len(layers) != 1:
        sys.exit(f"dfc_emulate: expected one input layer, the HAR has {len(layers)}")
    shape = tuple(int(d) for d in layers[0].output_shapes[0][1:])
    if int(np.prod(shape)) != per_window:
        sys.exit(f"dfc_emulate: input layer shape {shape} does not hold {per_window} values")
    return shape


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from hailo_sdk_client import ClientRunner, InferenceContext

    widths: dict[int, str] = {}
    for item in args.output_width:
        name, _, width = item.partition("=")
        if int(width) in widths:
            sys.exit(f"dfc_emulate: outputs {widths[int(width)]} and {name} have the same width")
        widths[int(width)] = name
    windows = np.load(args.windows, allow_pickle=False).astype(np.float32)
    runner = ClientRunner(har=args.har)
    shape = _input_shape(runner, int(np.prod(windows.shape[1:])))
    data = windows.reshape((len(windows), *shape))
    with runner.infer_context(InferenceContext.SDK_QUANTIZED) as ctx:
        raw = runner.infer(ctx, data)
    results = raw if isinstance(raw, (list, tuple)) else [raw]
    named: dict[str, np.ndarray] = {}
    for array in results:
        flat = np.asarray(array, dtype=np.float32).reshape(len(windows), -1)
        name = widths.get(flat.shape[1])
        if name is None or name in named:
            sys.exit(
                f"dfc_emulate: an output of width {flat.shape[1]} matches none of "
                f"{sorted(widths)} (or matches twice)"
            )
        named[name] = flat
    missing = sorted(set(widths.values()) - set(named))
    if missing:
        sys.exit(f"dfc_emulate: the emulator gave no output for {', '.join(missing)}")
    np.savez(args.output, **named)
    print(f"dfc_emulate: {len(windows)} windows through SDK_QUANTIZED -> {', '.join(named)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
