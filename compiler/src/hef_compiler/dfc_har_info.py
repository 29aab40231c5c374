"""Write a HAR's input layer shapes as JSON; run by the DFC's own Python.

    <dfc>/bin/python dfc_har_info.py --har N.har --output har_info.json
    -> {"inputs": [{"name": "N/input_layer1", "shape": [-1, 1, 100, 9]}]}

Standalone on purpose, like ``dfc_emulate.py``: the DFC's environment has
``hailo_sdk_client`` but not this package. Written against the DFC's Python API as the
Hailo Model Zoo uses it to size its calibration data (not run here: the DFC is not
installable in this lab): ``ClientRunner(har=...)``, ``runner.get_hn_model()
.get_input_layers()``, each layer's ``output_shape`` (NHWC, batch as -1; older and newer
releases name it ``output_shapes[0]`` too, so both are read).
"""

from __future__ import annotations

import argparse
import json
import sys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--har", required=True)
    p.add_argument("--output", required=True)
    return p


def _shape(layer: object) -> list[int]:
    shape = getattr(layer, "output_shape", None)
    if shape is None:
        shape = layer.output_shapes[0]  # type: ignore[attr-defined]
    return [int(d) for d in shape]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from hailo_sdk_client import ClientRunner

    runner = ClientRunner(har=args.har)
    layers = runner.get_hn_model().get_input_layers()
    inputs = [{"name": str(layer.name), "shape": _shape(layer)} for layer in layers]
    with open(args.output, "w", encoding="utf-8") as fh:
        json.dump({"inputs": inputs}, fh)
    for item in inputs:
        print(f"dfc_har_info: input layer {item['name']} shape {item['shape']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
