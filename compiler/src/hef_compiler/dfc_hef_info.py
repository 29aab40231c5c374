"""Write a HEF's network groups and vstreams as JSON; run by the DFC's own Python.

    <dfc>/bin/python dfc_hef_info.py --hef N.hef --output hef_info.json
    -> {"network_groups": ["N"],
        "inputs": [{"name": "N/input_layer1", "shape": [1, 100, 9], "format_type": "UINT8",
                    "format_order": "NHWC", "network_name": "N/N", "original_names": [...]}],
        "outputs": [...]}

Standalone on purpose, like ``dfc_har_info.py``: the DFC's environment has HailoRT's
``hailo_platform`` (the DFC wheel depends on the hailort wheel) but not this package.
Written against HailoRT's Python API (hailo-ai/hailort, branch hailo8, v4.23.0,
``pyhailort.py`` class ``HEF``; not run here: no HailoRT in this lab): ``HEF(path)``
(no device needed), ``get_network_group_names()``, ``get_input_vstream_infos()`` and
``get_output_vstream_infos()`` (VStreamInfo: ``name``, ``shape``, ``format.type``,
``format.order``, ``network_name``) and ``get_original_names_from_vstream_name(name)``
(the original, i.e. ONNX, layer names behind a vstream).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hef", required=True)
    p.add_argument("--output", required=True)
    return p


def _enum(value: object) -> str:
    """A pybind11 enum's member name (``FormatOrder.NHWC`` -> ``NHWC``)."""
    name = getattr(value, "name", None)
    return str(name) if name is not None else str(value).rsplit(".", 1)[-1]


def _stream(hef: Any, info: Any) -> dict[str, Any]:
    try:
        original = [str(n) for n in hef.get_original_names_from_vstream_name(info.name)]
    except Exception as exc:  # HailoRT raises its own exception types
        print(f"dfc_hef_info: no original names for {info.name}: {exc}", file=sys.stderr)
        original = []
    return {
        "name": str(info.name),
        "shape": [int(d) for d in info.shape],
        "format_type": _enum(info.format.type),
        "format_order": _enum(info.format.order),
        "network_name": str(getattr(info, "network_name", "")),
        "original_names": original,
    }


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        from hailo_platform import HEF
    except ImportError as exc:
        sys.exit(
            f"dfc_hef_info: cannot import hailo_platform ({exc}); the DFC environment "
            "needs HailoRT's Python package (the hailort wheel of the DFC's release)"
        )

    try:
        hef = HEF(args.hef)
    except Exception as exc:  # HailoRTInvalidHEFException and others
        sys.exit(f"dfc_hef_info: HailoRT cannot read {args.hef} as a HEF: {exc!r}")
    info = {
        "network_groups": [str(n) for n in hef.get_network_group_names()],
        "inputs": [_stream(hef, s) for s in hef.get_input_vstream_infos()],
        "outputs": [_stream(hef, s) for s in hef.get_output_vstream_infos()],
    }
    with open(args.output, "w", encoding="utf-8") as fh:
        json.dump(info, fh)
    print(f"dfc_hef_info: network groups {info['network_groups']}")
    for kind in ("inputs", "outputs"):
        for s in info[kind]:
            print(
                f"dfc_hef_info: {kind[:-1]} {s['name']} shape {s['shape']} "
                f"{s['format_type']} {s['format_order']} <- {s['original_names']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
