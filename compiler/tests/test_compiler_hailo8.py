"""Target hailo8 against the DFC's documented command line.

NO REAL DFC RUNS HERE (it is a licensed download, not installable in this lab). These
tests pin the exact argv lists, every guardrail, and - with a fake ``hailo`` executable
on PATH - the sequence of calls and the collection of the .hef.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from hef_compiler.config import load_config
from hef_compiler.errors import ToolchainError
from hef_compiler.targets import hailo8
from hefc_testing import Run, snapshot

FAKE_HAILO = r'''#!{python}
"""A stand-in for the DFC's `hailo` command: logs its argv, writes what the real one would."""
import json, os, sys
from pathlib import Path
import numpy as np

argv = sys.argv[1:]
with open(os.environ["FAKE_HAILO_LOG"], "a") as log:
    log.write(json.dumps({{"argv": argv, "cwd": os.getcwd(),
                          "license": os.environ.get("HAILO_DFC_LICENSE_FILE"),
                          "home": os.environ.get("HOME"),
                          "tmpdir": os.environ.get("TMPDIR")}}) + "\n")
if argv == ["--version"]:
    print("HailoRT v4.20.0")
    print("Hailo Dataflow Compiler v3.30.0")
    sys.exit(0)

def opt(name):
    return argv[argv.index(name) + 1]

step = argv[0]
if os.environ.get("FAKE_HAILO_FAIL") == step:
    print(f"[fake] {{step}} starting")
    print(f"[error] {{step}}: UnsupportedModelError: something the DFC did not like",
          file=sys.stderr)
    sys.exit(3)
Path("hailo_sdk.client.log").write_text("DFC log written into the working directory\n")
# Like the real DFC (and TensorFlow under it), write into $HOME and the temp directory:
# with HOME=/nonexistent or a read-only /tmp this fails.
import tempfile
Path(os.environ["HOME"], ".hailo").mkdir(exist_ok=True)
Path(os.environ["HOME"], ".hailo", "sdk.log").write_text(step + "\n")
if not tempfile.gettempdir().startswith(os.environ.get("TMPDIR") or "/nowhere"):
    sys.exit(f"[fake] {{tempfile.gettempdir()}} is read-only in the job (no TMPDIR given)")
with tempfile.NamedTemporaryFile(prefix="dfc-") as scratch:
    scratch.write(b"scratch")
def read_har(path, kind):
    data = Path(path).read_bytes()
    prefix = b"HAR " + kind.encode() + b" "
    if not data.startswith(prefix):
        sys.exit(f"[error] {{path}} is not a {{kind}} HAR")
    return json.loads(data[len(prefix):])

def write_har(path, kind, info):
    Path(path).write_bytes(b"HAR " + kind.encode() + b" " + json.dumps(info).encode())

ARCHS = ("hailo8", "hailo8l", "hailo8r", "hailo10h", "hailo15h", "hailo15m")
arch = opt("--hw-arch") if "--hw-arch" in argv else "hailo8"  # the DFC's default
if arch not in ARCHS:
    sys.exit(f"[error] argument --hw-arch: invalid choice: {{arch!r}}")
def input_layer_shape(onnx_path, start):
    """The Hailo input layer's shape (NHWC, batch -1) for the tensor entering `start`."""
    import onnx
    model = onnx.shape_inference.infer_shapes(onnx.load(onnx_path))
    node = next((n for n in model.graph.node if n.name == start), None)
    if node is None:
        sys.exit(f"[error] start node {{start}} is not in the graph")
    values = list(model.graph.input) + list(model.graph.value_info)
    tensor = next(v for v in values if v.name == node.input[0])
    dims = [d.dim_value for d in tensor.type.tensor_type.shape.dim]
    if len(dims) == 4:  # NCHW -> NHWC
        return [-1, dims[2], dims[3], dims[1]]
    if len(dims) == 3:  # a sequence (N, W, C): one row of an image
        return [-1, 1, dims[1], dims[2]]
    return [-1, *dims[1:]]

def hef_bytes(net, info):
    """A fake HEF (read by the fake hailo_platform): one network group with the input
    stream in the parsed NHWC shape and an output stream per end node, named and ordered
    as HailoRT does (a Gemm is an `fc` layer; an activation after it is fused into it
    and both ONNX nodes are its original names). FAKE_HEF_* make it wrong."""
    if os.environ.get("FAKE_HEF_GARBAGE"):
        return b"not a HEF at all"
    import onnx
    model = onnx.shape_inference.infer_shapes(onnx.load(info["onnx"]))
    nodes = list(model.graph.node)
    producer = {{o: n for n in nodes for o in n.output}}
    values = {{v.name: v for v in list(model.graph.output) + list(model.graph.value_info)}}
    kinds = {{"Gemm": "fc", "Conv": "conv"}}
    numbers = {{}}
    for n in nodes:
        if n.op_type in kinds:
            numbers[n.name] = sum(1 for m in nodes[: nodes.index(n) + 1] if m.op_type == n.op_type)
    widths = dict(w.split("=") for w in os.environ.get("FAKE_HEF_WIDTH", "").split(",") if w)
    outputs = []
    for end in info["end_nodes"]:
        node = next(n for n in nodes if n.name == end)
        core, original = node, [node.name]
        if node.op_type in ("Sigmoid", "Relu") and node.input[0] in producer:
            core = producer[node.input[0]]
            original = [core.name, node.name]
        dims = [d.dim_value for d in values[node.output[0]].type.tensor_type.shape.dim]
        width = int(widths.get(end, np.prod(dims[1:])))
        name = f"{{net}}/{{kinds.get(core.op_type, 'output')}}{{numbers.get(core.name, 1)}}"
        outputs.append({{"name": name, "shape": [width], "order": "NC", "original": original}})
    if os.environ.get("FAKE_HEF_NO_ORIGINAL_NAMES"):
        for o in outputs:
            o["original"] = []
    if os.environ.get("FAKE_HEF_SWAP_ORIGINAL_NAMES"):
        first, second = outputs[0]["original"], outputs[1]["original"]
        outputs[0]["original"], outputs[1]["original"] = second, first
    if os.environ.get("FAKE_HEF_EXTRA_OUTPUT"):
        outputs.append({{"name": f"{{net}}/conv4", "shape": [1, 1, 32], "order": "NHWC",
                        "original": ["tcn3_conv"]}})
    outputs.sort(key=lambda o: o["name"], reverse=True)  # HailoRT's order, not the ONNX's
    group = {{"name": net, "inputs": [{{"name": f"{{net}}/input_layer1",
                                       "shape": info["input_shape"][1:], "order": "NHWC",
                                       "original": ["tcn0_conv"]}}],
             "outputs": outputs}}
    groups = [group] + [{{**group, "name": f"{{net}}_{{i}}"}}
                        for i in range(2, int(os.environ.get("FAKE_HEF_NETWORK_GROUPS", "1")) + 1)]
    return b"\x01HEF" + json.dumps({{"network_groups": groups}}).encode()

if step == "parser":
    assert argv[1] == "onnx" and Path(argv[2]).is_file(), argv
    starts = argv[argv.index("--start-node-names") + 1 : argv.index("--end-node-names")]
    shape = os.environ.get("FAKE_HAILO_INPUT_SHAPE")
    shape = ([int(d) for d in shape.split(",")] if shape
             else input_layer_shape(argv[2], starts[0]))
    ends = argv[argv.index("--end-node-names") + 1 :]
    ends = ends[: next((i for i, a in enumerate(ends) if a.startswith("-")), len(ends))]
    info = {{"net": opt("--net-name"), "hw_arch": arch, "input_shape": shape,
             "onnx": str(Path(argv[2]).resolve()), "end_nodes": ends}}
    write_har(opt("--har-path"), "parsed", info)
    print("[info] Translation completed")
elif step == "optimize":
    info = read_har(argv[1], "parsed")
    if info["hw_arch"] != arch:
        sys.exit(f"[error] HAR is for {{info['hw_arch']}}, --hw-arch is {{arch}}")
    calib = np.load(opt("--calib-set-path"))
    # As the DFC does: each sample must have the input layer's shape without the batch.
    if calib.dtype != np.float32 or calib.shape[1:] != tuple(info["input_shape"][1:]):
        sys.exit(f"[error] calibration set {{calib.shape}} {{calib.dtype}} does not fit the "
                 f"input layer shape {{info['input_shape']}}")
    print(f"[info] calibration set {{calib.shape}}")
    script = Path(opt("--model-script")).read_text() if "--model-script" in argv else ""
    import re
    level = re.search(r"model_optimization_flavor\(optimization_level=(\d)", script)
    size = re.search(r"calibset_size=(\d+)", script)
    used = min(int(size.group(1)) if size else 64, len(calib))  # the DFC's default: 64
    print(f"[info] using {{used}} calibration samples")
    if level is None:  # what the DFC does without an explicit level
        if len(calib) < 1024 or not os.environ.get("FAKE_HAILO_GPU"):
            print("[warning] Reducing optimization level to 0 (the accuracy won't be "
                  "optimized and compression won't be used) because there's less data than "
                  "the recommended amount (1024), and there's no available GPU")
            print("[warning] Running model optimization with zero level of optimization is "
                  "not recommended for production use and might lead to suboptimal accuracy "
                  "results")
        else:
            print("[info] Using default optimization level of 2")
    write_har(opt("--output-har-path"), "optimized", {{**info, "windows": len(calib)}})
    print("[info] Model Optimization is done")
elif step == "compiler":
    har = Path(argv[1])
    info = read_har(har, "optimized")
    if info["hw_arch"] != arch:
        sys.exit(f"[error] HAR is for {{info['hw_arch']}}, --hw-arch is {{arch}}")
    net = har.name[: -len("_optimized.har")]
    Path(opt("--output-dir"), net + ".hef").write_bytes(hef_bytes(net, info))
    write_har(opt("--output-har-path"), "compiled", info)
    print("[info] Compilation complete")
else:
    sys.exit(f"unexpected command {{argv}}")
'''


# The DFC's Python API as far as the golden vectors use it (documented names; strict:
# it only takes an optimized HAR, only SDK_QUANTIZED, only NHWC input of the parsed
# shape), returning the outputs in an order of its own with Hailo's extra dims.
FAKE_SDK = r"""
import contextlib, enum, os
from pathlib import Path
import numpy as np

class InferenceContext(enum.Enum):
    SDK_NATIVE = 1
    SDK_FP_OPTIMIZED = 2
    SDK_QUANTIZED = 3

import json

class _Layer:
    def __init__(self, name, shape):
        self.name = name
        self.output_shape = list(shape)
        self.output_shapes = [list(shape)]

class _Hn:
    def __init__(self, info):
        self._info = info

    def get_input_layers(self):
        return [_Layer(self._info["net"] + "/input_layer1", self._info["input_shape"])]

class ClientRunner:
    def __init__(self, har):
        data = Path(har).read_bytes()
        kind, _, rest = data.split(b" ", 2)[1], None, data.split(b" ", 2)[2]
        assert kind in (b"parsed", b"optimized"), har
        self.kind = kind.decode()
        self._info = json.loads(rest)
        self._ctx = None

    def get_hn_model(self):
        return _Hn(self._info)

    @contextlib.contextmanager
    def infer_context(self, kind):
        assert kind is InferenceContext.SDK_QUANTIZED, kind
        assert self.kind == "optimized", "SDK_QUANTIZED needs an optimized HAR"
        self._ctx = kind
        yield kind
        self._ctx = None

    def infer(self, ctx, dataset):
        assert ctx is self._ctx and ctx is not None
        want = tuple(self._info["input_shape"][1:])
        assert dataset.dtype == np.float32 and dataset.shape[1:] == want, dataset.shape
        # The float model itself (the parsed graph gives what the whole ONNX gives on
        # the window: test_start_node_skips_the_input_transpose_and_reshape), with the
        # outputs rounded to a step: deterministic quantization-like error.
        import onnx, onnxruntime as ort
        step = float(os.environ.get("FAKE_SDK_QUANT_STEP", str(2**-6)))
        model = onnx.load(self._info["onnx"])
        ends = [next(n for n in model.graph.node if n.name == e).output[0]
                for e in self._info["end_nodes"]]
        session = ort.InferenceSession(self._info["onnx"], providers=["CPUExecutionProvider"])
        feed = session.get_inputs()[0]
        rows = {name: [] for name in ends}
        for sample in dataset:
            got = session.run(ends, {feed.name: sample.reshape(feed.shape)})
            for name, value in zip(ends, got):
                rows[name].append(value.reshape(-1))
        out = [(np.round(np.stack(rows[name]) / step) * step).reshape(len(dataset), 1, 1, -1)
               for name in ends]
        return [o.astype(np.float32) for o in reversed(out)]  # its own order, Hailo's dims
"""

# HailoRT's Python API as far as dfc_hef_info.py uses it (hailo-ai/hailort, branch
# hailo8, pyhailort.py class HEF). Strict: HEF() takes a str path (or bytes) and raises
# HailoRTInvalidHEFException for anything that is not a HEF; no name means the first
# network group; an unknown vstream name raises.
FAKE_PLATFORM = r"""
import enum, json
from pathlib import Path

class HailoRTException(Exception):
    pass

class HailoRTInvalidHEFException(HailoRTException):
    pass

class FormatType(enum.Enum):
    AUTO = 0
    UINT8 = 1
    UINT16 = 2
    FLOAT32 = 3

class FormatOrder(enum.Enum):
    AUTO = 0
    NHWC = 1
    NHCW = 2
    FCR = 3
    F8CR = 4
    NHW = 5
    NC = 6

class _Format:
    def __init__(self, order):
        self.type = FormatType.UINT8
        self.order = FormatOrder[order]

class VStreamInfo:
    def __init__(self, stream, network):
        self.name = stream["name"]
        self.shape = tuple(stream["shape"])
        self.format = _Format(stream["order"])
        self.network_name = network

class HEF:
    def __init__(self, hef_source):
        if isinstance(hef_source, str):
            data = Path(hef_source).read_bytes()
        elif isinstance(hef_source, bytes):
            data = hef_source
        else:
            raise ValueError("HEF can only be created from a file path (str) or a buffer (bytes)")
        if not data.startswith(b"\x01HEF"):
            raise HailoRTInvalidHEFException(
                "Invalid HEF. See hailort.log for more information")
        self._groups = json.loads(data[4:])["network_groups"]

    def _group(self, name):
        if not name:
            return self._groups[0]
        for g in self._groups:
            if g["name"] == name:
                return g
        raise HailoRTException(f"HAILO_NOT_FOUND: network group {name}")

    def get_network_group_names(self):
        return [g["name"] for g in self._groups]

    def get_input_vstream_infos(self, name=None):
        g = self._group(name)
        return [VStreamInfo(s, g["name"] + "/" + g["name"]) for s in g["inputs"]]

    def get_output_vstream_infos(self, name=None):
        g = self._group(name)
        return [VStreamInfo(s, g["name"] + "/" + g["name"]) for s in g["outputs"]]

    def get_original_names_from_vstream_name(self, vstream_name, network_group_name=None):
        g = self._group(network_group_name)
        for s in g["inputs"] + g["outputs"]:
            if s["name"] == vstream_name:
                return list(s["original"])
        raise HailoRTException(f"HAILO_NOT_FOUND: vstream {vstream_name}")
"""


@pytest.fixture
def fake_dfc(tmp_path: Path) -> dict[str, Any]:
    """A DFC 'installation' at tmp/dfc with bin/hailo, bin/python and hailo_sdk_client,
    and an env that points at it."""
    home = tmp_path / "dfc"
    (home / "bin").mkdir(parents=True)
    exe = home / "bin" / "hailo"
    # As in a venv: bin/python is a symlink to the interpreter that made it, and the
    # console script's shebang names bin/python.
    (home / "bin" / "python").symlink_to(sys.executable)
    exe.write_text(FAKE_HAILO.format(python=home / "bin" / "python"))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    sdk = home / "site" / "hailo_sdk_client"
    sdk.mkdir(parents=True)
    (sdk / "__init__.py").write_text(FAKE_SDK)
    # HailoRT's Python package, which the DFC wheel depends on, beside it.
    platform = home / "site" / "hailo_platform"
    platform.mkdir()
    (platform / "__init__.py").write_text(FAKE_PLATFORM)
    log = tmp_path / "hailo-calls.jsonl"
    env = {
        "PATH": "/usr/bin:/bin",
        # As in the job: a read-only root and a HOME that does not exist.
        "HOME": "/nonexistent",
        "HAILO_DFC_HOME": str(home),
        "FAKE_HAILO_LOG": str(log),
        # The fake SDK, then (as a DFC venv has them) onnx and numpy.
        "PYTHONPATH": os.pathsep.join([str(home / "site"), str(Path(onnx.__file__).parents[1])]),
    }
    return {"home": home, "exe": exe, "log": log, "env": env}


def _calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_exact_dfc_command_lines(workspace: Path, tmp_path: Path) -> None:
    cfg = load_config(workspace / "hailo_models" / "tcn_encoder.yaml", workspace)
    hailo = Path("/opt/hailo-dfc/bin/hailo")
    work = tmp_path / "w"
    cmds = hailo8.commands(hailo, cfg, cfg.onnx_path, work)
    onnx_path = str(workspace / "exports" / "tcn_encoder.onnx")
    assert cmds.parse == [
        "/opt/hailo-dfc/bin/hailo", "parser", "onnx", onnx_path,
        "--net-name", "tcn_encoder",
        "--hw-arch", "hailo8",
        "--har-path", f"{work}/tcn_encoder.har",
        "--start-node-names", "tcn0_conv",
        "--end-node-names", "latent_head", "motif_prob",
    ]  # fmt: skip
    # No -y: it answers yes to the parser's own end-node recommendation when parsing
    # fails; the end nodes are explicit, and a prompt meets EOF (stdin is /dev/null).
    assert "-y" not in cmds.parse
    assert cmds.optimize == [
        "/opt/hailo-dfc/bin/hailo", "optimize", f"{work}/tcn_encoder.har",
        "--hw-arch", "hailo8",
        "--calib-set-path", f"{work}/calib_set.npy",
        "--output-har-path", f"{work}/tcn_encoder_optimized.har",
        "--model-script", f"{work}/model_script.alls",
    ]  # fmt: skip
    assert cmds.compile == [
        "/opt/hailo-dfc/bin/hailo", "compiler", f"{work}/tcn_encoder_optimized.har",
        "--hw-arch", "hailo8",
        "--output-dir", str(work),
        "--output-har-path", f"{work}/tcn_encoder_compiled.har",
    ]  # fmt: skip
    assert cmds.hef == work / "tcn_encoder.hef"


def test_model_script_goes_to_optimize(
    write_config: Callable[..., Path], workspace: Path, tmp_path: Path
) -> None:
    cfg = load_config(
        write_config(
            dfc={
                "start_node_names": ["a"],
                "end_node_names": ["b"],
                "model_script": "hailo_models/t.alls",
            }
        ),
        workspace,
    )
    cmds = hailo8.commands(Path("hailo"), cfg, cfg.onnx_path, tmp_path)
    assert cmds.optimize[-2:] == ["--model-script", str(tmp_path / "model_script.alls")]
    assert "--model-script" not in cmds.compile
    # The generated script holds the user's, then the calibration size.
    (workspace / "hailo_models" / "t.alls").write_text("quantization_param(...)\n")
    text = hailo8.model_script(cfg, windows=300)
    assert text.index("quantization_param(...)") < text.index(
        "model_optimization_config(calibration, calibset_size=300)"
    )
    assert "model_optimization_flavor" not in text  # no level in this config
    assert cmds.parse[cmds.parse.index("--start-node-names") + 1] == "a"


def test_search_order_dfc_home_first_then_path(tmp_path: Path) -> None:
    env = {"HAILO_DFC_HOME": "/opt/dfc", "PATH": "/usr/local/bin:/usr/bin"}
    assert hailo8.search_dirs(env) == ["/opt/dfc/bin", "/usr/local/bin", "/usr/bin"]
    assert hailo8.dfc_env(env)["PATH"] == "/opt/dfc/bin:/usr/local/bin:/usr/bin"


def test_dfc_missing_names_path_searched_and_where_to_get_it(
    run_cli: Callable[..., Run], workspace: Path, tmp_path: Path
) -> None:
    env = {"PATH": f"{tmp_path}/empty:/usr/bin:/bin", "HAILO_DFC_HOME": str(tmp_path / "nodfc")}
    run = run_cli("--target", "hailo8", env=env)
    assert run.code == 4
    assert run.summary["error_kind"] == "toolchain"
    message = run.summary["error"]
    assert "Hailo Dataflow Compiler not found" in message
    assert f"{tmp_path}/nodfc/bin:{tmp_path}/empty:/usr/bin:/bin" in message
    assert "Hailo Developer Zone" in message
    assert "HAILO_DFC_HOME" in message
    assert not (workspace / "artifacts" / "tcn_encoder-0.1.0.hef").exists()


def test_dfc_missing_without_home_says_so() -> None:
    with pytest.raises(ToolchainError, match="HAILO_DFC_HOME is not set"):
        hailo8.find_hailo({"PATH": "/nonexistent"})


def test_dfc_that_cannot_run_is_explained(tmp_path: Path) -> None:
    exe = tmp_path / "bin" / "hailo"
    exe.parent.mkdir()
    exe.write_text("#!/nonexistent/venv/bin/python3.10\n")
    exe.chmod(0o755)
    with pytest.raises(
        ToolchainError, match=r"did not run .*interpreter that exists in the container"
    ):
        hailo8.dfc_version(exe, {"PATH": str(exe.parent)})


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("Hailo Dataflow Compiler v3.30.0\n", "3.30.0"),
        ("HailoRT v4.20.0\nHailo Dataflow Compiler v3.31.0", "3.31.0"),
        ("hailo_dataflow_compiler 3.29.0", "3.29.0"),
        ("no numbers", None),
    ],
)
def test_version_parsing(text: str, version: str | None) -> None:
    assert hailo8.parse_version(text) == version


def test_fake_dfc_runs_the_three_steps_and_the_hef_is_published(
    run_cli: Callable[..., Run], workspace: Path, fake_dfc: dict[str, Any], tmp_path: Path
) -> None:
    licence = tmp_path / "secret" / "hailo.lic"
    licence.parent.mkdir()
    licence.write_text("LICENCE-CONTENT-DO-NOT-COPY")
    env = {**fake_dfc["env"], "HAILO_DFC_LICENSE_FILE": str(licence)}
    run = run_cli("--target", "hailo8", env=env)
    assert run.code == 0, run.stderr
    calls = _calls(fake_dfc["log"])
    steps = [c["argv"][0] for c in calls]
    assert steps == ["--version", "parser", "optimize", "compiler"]
    # The licence path reaches the DFC through the environment, never as a file we copy.
    assert all(c["license"] == str(licence) for c in calls)
    out = workspace / "artifacts"
    assert sorted(p.name for p in out.iterdir()) == [
        ".hef-compile.lock",
        "hef_sha256sum.txt",
        "tcn_encoder-0.1.0.golden.json",
        "tcn_encoder-0.1.0.hef",
        "tcn_encoder-0.1.0.manifest.json",
    ]
    assert (out / "tcn_encoder-0.1.0.hef").read_bytes().startswith(b"\x01HEF")
    for p in out.iterdir():
        assert b"LICENCE-CONTENT" not in p.read_bytes()
        assert str(licence).encode() not in p.read_bytes()
    manifest = json.loads((out / "tcn_encoder-0.1.0.manifest.json").read_text())
    assert manifest["target"] == "hailo8"
    assert manifest["hw_arch"] == "hailo8"
    assert manifest["artifact"] == "tcn_encoder-0.1.0.hef"
    assert manifest["compiler"]["backend"] == "hailo DFC 3.30.0"
    assert set(manifest["parity"]["max_abs_error"]) == {"latent", "motif_scores"}
    assert manifest["parity"]["thresholds"]["max_abs_error"]["latent"] == 0.15
    # The DFC ran in scratch space: its own log did not land in the output.
    assert all(Path(c["cwd"]).parent != out for c in calls[1:])
    assert "[dfc optimize] [info] Model Optimization is done" in run.stderr
    # Golden vectors from the DFC's quantized emulator, outputs matched by width.
    golden = json.loads((out / "tcn_encoder-0.1.0.golden.json").read_text())
    assert golden["produced_by"] == "hailo DFC 3.30.0 quantized emulator (SDK_QUANTIZED)"
    assert golden["target"] == "hailo8"
    assert golden["artifact"] == "tcn_encoder-0.1.0.hef"
    assert [len(golden["outputs"][k][0]) for k in ("latent", "motif_scores")] == [64, 12]
    assert all(0.0 <= v <= 1.0 for row in golden["outputs"]["motif_scores"] for v in row)
    assert manifest["golden"]["file"] == "tcn_encoder-0.1.0.golden.json"
    assert "[dfc emulator] dfc_emulate: 8 windows through SDK_QUANTIZED" in run.stderr
    # Idempotent: a second run only asks the DFC for its version.
    again = run_cli("--target", "hailo8", env=env)
    assert again.summary["status"] == "up_to_date"
    assert [c["argv"][0] for c in _calls(fake_dfc["log"])][4:] == ["--version"]


@pytest.mark.parametrize("failing", ["parser", "optimize", "compiler"])
def test_failing_dfc_step_reports_and_keeps_old_artifacts(
    run_cli: Callable[..., Run],
    workspace: Path,
    fake_dfc: dict[str, Any],
    failing: str,
) -> None:
    assert run_cli("--target", "hailo8", env=fake_dfc["env"]).code == 0
    out = workspace / "artifacts"
    before = snapshot(out)
    env = {**fake_dfc["env"], "FAKE_HAILO_FAIL": failing}
    run = run_cli("--target", "hailo8", "--force", env=env)
    assert run.code == 4
    message = run.summary["error"]
    assert f"DFC step '{failing}' failed with exit 3" in message
    assert "UnsupportedModelError: something the DFC did not like" in message
    assert snapshot(out) == before
    assert [p for p in out.iterdir() if p.is_dir()] == []


def test_missing_licence_file_is_refused(
    run_cli: Callable[..., Run], fake_dfc: dict[str, Any], tmp_path: Path
) -> None:
    env = {**fake_dfc["env"], "HAILO_DFC_LICENSE_FILE": str(tmp_path / "nope.lic")}
    run = run_cli("--target", "hailo8", env=env)
    assert run.code == 4
    assert (
        f"HAILO_DFC_LICENSE_FILE={tmp_path / 'nope.lic'}: no readable file there"
        in run.summary["error"]
    )
    assert [c["argv"][0] for c in _calls(fake_dfc["log"])] == ["--version"]


def test_compiler_that_writes_no_hef_is_an_error(
    run_cli: Callable[..., Run], fake_dfc: dict[str, Any]
) -> None:
    exe: Path = fake_dfc["exe"]
    exe.write_text(exe.read_text().replace('+ ".hef"', '+ ".not-a-hef"'))
    run = run_cli("--target", "hailo8", env=fake_dfc["env"])
    assert run.code == 4
    assert "DFC step 'compiler' exited 0 but" in run.summary["error"]
    assert "tcn_encoder.hef is missing" in run.summary["error"]


def test_unsupported_op_stops_before_the_dfc(
    run_cli: Callable[..., Run], workspace: Path, fake_dfc: dict[str, Any]
) -> None:
    model = onnx.load(workspace / "exports" / "tcn_encoder.onnx")
    for node in model.graph.node:
        if node.name == "motif_prob":
            node.op_type = "Hardmax"
    onnx.save(model, workspace / "exports" / "tcn_encoder.onnx")
    run = run_cli("--target", "hailo8", env=fake_dfc["env"])
    assert run.code == 3
    assert "node 'motif_prob' uses Hardmax" in run.summary["error"]
    assert _calls(fake_dfc["log"]) == []
    assert os.path.exists(fake_dfc["exe"])


def test_dfc_runs_with_home_and_tmpdir_in_the_work_directory(
    run_cli: Callable[..., Run], workspace: Path, fake_dfc: dict[str, Any]
) -> None:
    run = run_cli("--target", "hailo8", env=fake_dfc["env"])
    assert run.code == 0, run.stderr
    out = workspace / "artifacts"
    calls = _calls(fake_dfc["log"])
    version = calls[0]
    assert version["argv"] == ["--version"]
    assert Path(version["home"]).parent == out
    assert Path(version["cwd"]) == Path(version["home"])
    assert version["tmpdir"] == version["home"]
    steps = [c for c in calls if c["argv"][0] != "--version"]
    assert [c["argv"][0] for c in steps] == ["parser", "optimize", "compiler"]
    for call in steps:
        home, tmpdir = Path(call["home"]), Path(call["tmpdir"])
        # Inside the staging directory in the output directory (removed afterwards).
        assert home.parent.parent.parent == out, home
        assert home.name == "home"
        assert tmpdir.parent == home.parent
        assert tmpdir.name == "tmp"
    assert [p for p in out.iterdir() if p.is_dir()] == []


def test_venv_python_linking_to_a_missing_interpreter_is_diagnosed(
    run_cli: Callable[..., Run], fake_dfc: dict[str, Any]
) -> None:
    link: Path = fake_dfc["home"] / "bin" / "python"
    link.unlink()
    link.symlink_to("/usr/local/pyenv/versions/3.10.14/bin/python3.10")
    run = run_cli("--target", "hailo8", env=fake_dfc["env"])
    assert run.code == 4
    message = run.summary["error"]
    assert f"{link} is a symlink to /usr/local/pyenv/versions/3.10.14/bin/python3.10" in message
    assert "does not exist in this container" in message
    # Found before any DFC command ran (not even --version).
    assert _calls(fake_dfc["log"]) == []


def test_check_reports_a_broken_venv_as_a_note(
    run_cli: Callable[..., Run], fake_dfc: dict[str, Any]
) -> None:
    link: Path = fake_dfc["home"] / "bin" / "python"
    link.unlink()
    link.symlink_to("python3.10")  # relative, as `python -m venv` on some hosts writes
    run = run_cli("--target", "hailo8", "--check", env=fake_dfc["env"])
    assert run.code == 0
    assert any("is a symlink to python3.10" in n for n in run.summary["notes"])


def test_hailo8l_every_dfc_step_gets_the_architecture(
    run_cli: Callable[..., Run],
    write_config: Callable[..., Path],
    workspace: Path,
    fake_dfc: dict[str, Any],
) -> None:
    write_config(hw_arch="hailo8l")
    run = run_cli("--target", "hailo8", env=fake_dfc["env"])
    assert run.code == 0, run.stderr
    steps = [c["argv"] for c in _calls(fake_dfc["log"]) if c["argv"][0] != "--version"]
    assert [a[0] for a in steps] == ["parser", "optimize", "compiler"]
    for argv in steps:
        assert argv[argv.index("--hw-arch") + 1] == "hailo8l", argv
    out = workspace / "artifacts"
    manifest = json.loads((out / "tcn_encoder-0.1.0.manifest.json").read_text())
    # target: the toolchain and artifact kind (a .hef for HailoRT); hw_arch: the chip.
    assert manifest["target"] == "hailo8"
    assert manifest["hw_arch"] == "hailo8l"
    assert manifest["artifact"] == "tcn_encoder-0.1.0.hef"
    # Same model, other chip: a new compile, not "up to date".
    write_config(hw_arch="hailo8")
    again = run_cli("--target", "hailo8", "--check", env=fake_dfc["env"])
    assert again.summary["status"] == "stale"


def test_fake_dfc_refuses_a_har_of_another_architecture(
    run_cli: Callable[..., Run], fake_dfc: dict[str, Any]
) -> None:
    exe: Path = fake_dfc["exe"]
    # A broken driver that forgets --hw-arch on optimize: the DFC would use hailo8.
    exe.write_text(
        exe.read_text().replace(
            "argv = sys.argv[1:]\n",
            "argv = sys.argv[1:]\n"
            "if argv[0] == 'optimize' and '--hw-arch' in argv:\n"
            "    i = argv.index('--hw-arch'); del argv[i:i + 2]\n",
            1,
        )
    )
    cfg = fake_dfc["home"].parent / "repo" / "hailo_models" / "tcn_encoder.yaml"
    cfg.write_text(cfg.read_text().replace("hw_arch: hailo8", "hw_arch: hailo8l"))
    run = run_cli("--target", "hailo8", env=fake_dfc["env"])
    assert run.code == 4
    assert "HAR is for hailo8l, --hw-arch is hailo8" in run.summary["error"]


def test_calibration_set_has_the_parsed_input_layer_shape(
    run_cli: Callable[..., Run], fake_dfc: dict[str, Any]
) -> None:
    run = run_cli("--target", "hailo8", env=fake_dfc["env"])
    assert run.code == 0, run.stderr
    # tcn0_conv takes NCHW (1, 9, 1, 100): the Hailo input layer is NHWC (-1, 1, 100, 9).
    assert "[dfc optimize] [info] calibration set (512, 1, 100, 9)" in run.stderr
    assert "parsed input layer shape: [-1, 1, 100, 9]" in run.stderr


def test_calibration_shape_is_read_from_the_har_not_assumed(
    run_cli: Callable[..., Run], fake_dfc: dict[str, Any]
) -> None:
    env = {**fake_dfc["env"], "FAKE_HAILO_INPUT_SHAPE": "-1,100,1,9"}
    run = run_cli("--target", "hailo8", env=env)
    assert run.code == 0, run.stderr
    assert "[dfc optimize] [info] calibration set (512, 100, 1, 9)" in run.stderr


def test_parsed_input_that_cannot_hold_a_window_is_refused_before_optimize(
    run_cli: Callable[..., Run], fake_dfc: dict[str, Any]
) -> None:
    env = {**fake_dfc["env"], "FAKE_HAILO_INPUT_SHAPE": "-1,1,50,9"}
    run = run_cli("--target", "hailo8", env=env)
    assert run.code == 4
    assert "input layer shape [-1, 1, 50, 9]" in run.summary["error"]
    assert "900 values" in run.summary["error"]
    steps = [c["argv"][0] for c in _calls(fake_dfc["log"])]
    assert "optimize" not in steps


def test_start_node_skips_the_input_transpose_and_reshape(workspace: Path, tmp_path: Path) -> None:
    """The configured start node's input is NCHW (1, 9, 1, 100), whose NHWC form is the
    window itself: the parsed network (from tcn0_conv) fed the window reshaped to
    (1, 1, 100, 9) NHWC gives what the whole ONNX gives on the window."""
    import onnxruntime as ort
    from hef_compiler import calibration

    cfg = load_config(workspace / "hailo_models" / "tcn_encoder.yaml", workspace)
    assert cfg.dfc.start_node_names == ("tcn0_conv",)
    model = onnx.shape_inference.infer_shapes(onnx.load(cfg.onnx_path))
    nodes = {n.name: n for n in model.graph.node}
    skipped = [n.op_type for n in model.graph.node[: list(nodes).index("tcn0_conv")]]
    assert skipped == ["Transpose", "Reshape"]
    entry = nodes["tcn0_conv"].input[0]
    info = next(v for v in model.graph.value_info if v.name == entry)
    assert [d.dim_value for d in info.type.tensor_type.shape.dim] == [1, 9, 1, 100]
    cut = tmp_path / "from_start_node.onnx"
    onnx.utils.extract_model(str(cfg.onnx_path), str(cut), [entry], list(cfg.outputs))
    whole = ort.InferenceSession(str(cfg.onnx_path), providers=["CPUExecutionProvider"])
    part = ort.InferenceSession(str(cut), providers=["CPUExecutionProvider"])
    for window in calibration.generate_windows(4, 3):
        nhwc = window.reshape(1, 1, 100, 9)  # what the Hailo input layer takes
        want = whole.run(None, {"x": window[None]})
        got = part.run(None, {entry: nhwc.transpose(0, 3, 1, 2)})  # NHWC -> NCHW for ORT
        for a, b in zip(want, got, strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_optimization_level_is_explicit_in_the_model_script_and_the_manifest(
    run_cli: Callable[..., Run], workspace: Path, fake_dfc: dict[str, Any]
) -> None:
    run = run_cli("--target", "hailo8", env=fake_dfc["env"])
    assert run.code == 0, run.stderr
    optimize = next(c["argv"] for c in _calls(fake_dfc["log"]) if c["argv"][0] == "optimize")
    assert optimize[-2] == "--model-script"
    # All 512 windows are used (the DFC's default calibset_size is 64).
    assert "[dfc optimize] [info] using 512 calibration samples" in run.stderr
    assert "Reducing optimization level" not in run.stderr
    manifest = json.loads((workspace / "artifacts" / "tcn_encoder-0.1.0.manifest.json").read_text())
    assert manifest["optimization"] == {
        "optimization_level": 0,
        "set_by": "dfc.optimization_level",
        "calibration_windows": 512,
        "dfc_messages": [],
    }
    assert run.summary["optimization"] == manifest["optimization"]


def test_without_a_level_the_dfc_drop_to_level_0_is_warned_and_recorded(
    run_cli: Callable[..., Run],
    write_config: Callable[..., Path],
    workspace: Path,
    reference_config: dict[str, Any],
    fake_dfc: dict[str, Any],
) -> None:
    dfc = {k: v for k, v in reference_config["dfc"].items() if k != "optimization_level"}
    write_config(dfc=dfc)
    run = run_cli("--target", "hailo8", env=fake_dfc["env"])
    assert run.code == 0, run.stderr
    assert "warning: no dfc.optimization_level" in run.stderr
    assert "512 calibration windows (fewer than 1024)" in run.stderr
    manifest = json.loads((workspace / "artifacts" / "tcn_encoder-0.1.0.manifest.json").read_text())
    opt = manifest["optimization"]
    assert opt["optimization_level"] == 0
    assert opt["set_by"] == "DFC (reported)"
    assert opt["dfc_messages"][0].startswith("[warning] Reducing optimization level to 0")


def test_level_in_both_config_and_model_script_is_refused(
    run_cli: Callable[..., Run],
    write_config: Callable[..., Path],
    workspace: Path,
    reference_config: dict[str, Any],
    fake_dfc: dict[str, Any],
) -> None:
    (workspace / "hailo_models" / "t.alls").write_text(
        "model_optimization_flavor(optimization_level=2)\n"
    )
    write_config(dfc={**reference_config["dfc"], "model_script": "hailo_models/t.alls"})
    run = run_cli("--target", "hailo8", env=fake_dfc["env"])
    assert run.code == 2
    assert "dfc.optimization_level" in run.summary["error"]
    assert "model_optimization_flavor" in run.summary["error"]


def test_dfc_python_falls_back_to_the_interpreter_on_hailos_shebang(
    run_cli: Callable[..., Run], fake_dfc: dict[str, Any]
) -> None:
    """A DFC installed without a bin/python beside `hailo` (e.g. into a system Python):
    the HAR is read and the emulator run with the interpreter `hailo` names."""
    exe: Path = fake_dfc["exe"]
    (fake_dfc["home"] / "bin" / "python").unlink()
    exe.write_text(f"#!{sys.executable}\n" + exe.read_text().split("\n", 1)[1])
    run = run_cli("--target", "hailo8", env=fake_dfc["env"])
    assert run.code == 0, run.stderr
    assert "parsed input layer shape: [-1, 1, 100, 9]" in run.stderr


def _manifest(workspace: Path) -> dict[str, Any]:
    path = workspace / "artifacts" / "tcn_encoder-0.1.0.manifest.json"
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def test_hef_streams_are_read_checked_and_recorded(
    run_cli: Callable[..., Run], workspace: Path, fake_dfc: dict[str, Any]
) -> None:
    run = run_cli("--target", "hailo8", env=fake_dfc["env"])
    assert run.code == 0, run.stderr
    streams = _manifest(workspace)["hef_streams"]
    assert streams["network_group"] == "tcn_encoder"
    [inp] = streams["inputs"]
    assert (inp["name"], inp["shape"], inp["contract"]) == (
        "tcn_encoder/input_layer1",
        [1, 100, 9],
        "x",
    )
    assert (inp["format_type"], inp["format_order"]) == ("UINT8", "NHWC")
    # Matched by the ONNX end nodes among HailoRT's original names, in the contract's
    # order (HailoRT lists fc2 first).
    assert [(o["contract"], o["name"], o["shape"], o["original_names"], o["matched_by"])
            for o in streams["outputs"]] == [
        ("latent", "tcn_encoder/fc1", [64], ["latent_head"], "original_name"),
        ("motif_scores", "tcn_encoder/fc2", [12], ["motif_head", "motif_prob"], "original_name"),
    ]  # fmt: skip
    assert "[dfc hef-info] dfc_hef_info: output tcn_encoder/fc2 shape [12] UINT8 NC" in run.stderr
    # The manifest keeps its other keys, in order; hef_streams after optimization.
    keys = list(_manifest(workspace))
    assert keys.index("hef_streams") == keys.index("optimization") + 1


def test_hef_streams_without_original_names_are_matched_by_width(
    run_cli: Callable[..., Run], workspace: Path, fake_dfc: dict[str, Any]
) -> None:
    env = {**fake_dfc["env"], "FAKE_HEF_NO_ORIGINAL_NAMES": "1"}
    run = run_cli("--target", "hailo8", env=env)
    assert run.code == 0, run.stderr
    outputs = _manifest(workspace)["hef_streams"]["outputs"]
    assert [(o["contract"], o["name"], o["matched_by"]) for o in outputs] == [
        ("latent", "tcn_encoder/fc1", "width"),
        ("motif_scores", "tcn_encoder/fc2", "width"),
    ]


def test_hef_original_names_win_over_widths(
    run_cli: Callable[..., Run], workspace: Path, fake_dfc: dict[str, Any]
) -> None:
    """HailoRT says the 12-wide stream comes from latent_head: refused, although matching
    by width alone would have paired every stream with an output."""
    env = {**fake_dfc["env"], "FAKE_HEF_SWAP_ORIGINAL_NAMES": "1"}
    run = run_cli("--target", "hailo8", env=env)
    assert run.code == 4
    message = run.summary["error"]
    assert "the compiled HEF's output streams do not match the contract" in message
    assert (
        "latent: stream tcn_encoder/fc2 (matched by original name) holds 12 values per "
        "window, the contract has 64" in message
    )
    assert not (workspace / "artifacts" / "tcn_encoder-0.1.0.hef").exists()


@pytest.mark.parametrize(
    ("knob", "expected"),
    [
        (
            {"FAKE_HEF_WIDTH": "latent_head=63"},
            "latent: stream tcn_encoder/fc1 (matched by original name) holds 63 values per "
            "window, the contract has 64 (latent [1, 64])",
        ),
        (
            {"FAKE_HEF_WIDTH": "latent_head=63", "FAKE_HEF_NO_ORIGINAL_NAMES": "1"},
            "latent: no stream from latent / latent_head, and 0 unmatched streams of width 64",
        ),
        (
            {"FAKE_HEF_EXTRA_OUTPUT": "1"},
            "stream tcn_encoder/conv4 [1, 1, 32] (32 values; from tcn3_conv) matches no "
            "contract output",
        ),
        (
            {"FAKE_HEF_NETWORK_GROUPS": "2"},
            "the compiled HEF has 2 network groups (tcn_encoder, tcn_encoder_2); expected "
            "exactly one (tcn_encoder)",
        ),
    ],
    ids=["wrong-width", "wrong-width-no-names", "extra-output", "two-network-groups"],
)
def test_hef_streams_that_break_the_contract_are_refused_and_old_artifacts_kept(
    run_cli: Callable[..., Run],
    workspace: Path,
    fake_dfc: dict[str, Any],
    knob: dict[str, str],
    expected: str,
) -> None:
    assert run_cli("--target", "hailo8", env=fake_dfc["env"]).code == 0
    out = workspace / "artifacts"
    before = snapshot(out)
    run = run_cli("--target", "hailo8", "--force", env={**fake_dfc["env"], **knob})
    assert run.code == 4, run.stderr
    assert run.summary["error_kind"] == "toolchain"
    message = run.summary["error"]
    assert expected in message
    # The streams HailoRT listed are named in the message.
    assert "output streams: tcn_encoder/fc2 " in message
    assert snapshot(out) == before
    assert [p for p in out.iterdir() if p.is_dir()] == []


def test_a_file_that_is_not_a_hef_is_refused(
    run_cli: Callable[..., Run], workspace: Path, fake_dfc: dict[str, Any]
) -> None:
    env = {**fake_dfc["env"], "FAKE_HEF_GARBAGE": "1"}
    run = run_cli("--target", "hailo8", env=env)
    assert run.code == 4
    message = run.summary["error"]
    assert "DFC step 'hef-info' failed with exit 1" in message
    assert "HailoRT cannot read" in message
    assert "tcn_encoder.hef as a HEF: HailoRTInvalidHEFException('Invalid HEF." in message
    assert not (workspace / "artifacts" / "tcn_encoder-0.1.0.hef").exists()


def test_hef_streams_of_equal_widths_are_told_apart_by_original_names(
    write_config: Callable[..., Path], workspace: Path
) -> None:
    """NUM_MOTIFS 64: both outputs are 64 wide, so only HailoRT's original names can say
    which stream is which; without them the check refuses rather than guess."""
    cfg = load_config(write_config(outputs={"latent": [1, 64], "motif_scores": [1, 64]}), workspace)
    model = onnx.load(cfg.onnx_path)
    candidates = hailo8.output_candidates(model, cfg.outputs)
    assert candidates == {
        "latent": ["latent", "latent_head"],
        "motif_scores": ["motif_scores", "motif_prob"],
    }

    def stream(name: str, original: list[str]) -> dict[str, Any]:
        return {"name": name, "shape": [64], "format_type": "UINT8", "format_order": "NC",
                "original_names": original}  # fmt: skip

    info = {
        "network_groups": ["tcn_encoder"],
        "inputs": [{"name": "tcn_encoder/input_layer1", "shape": [1, 100, 9],
                    "original_names": []}],
        "outputs": [stream("tcn_encoder/fc2", ["motif_head", "motif_prob"]),
                    stream("tcn_encoder/fc1", ["latent_head"])],
    }  # fmt: skip
    record = hailo8.check_hef_streams(info, cfg, candidates)
    assert [(o["contract"], o["name"]) for o in record["outputs"]] == [
        ("latent", "tcn_encoder/fc1"),
        ("motif_scores", "tcn_encoder/fc2"),
    ]
    for o in info["outputs"]:
        o["original_names"] = []
    with pytest.raises(ToolchainError, match="2 unmatched streams of width 64"):
        hailo8.check_hef_streams(info, cfg, candidates)


def test_hailo8_parity_figures_are_measured_and_recorded(
    run_cli: Callable[..., Run], workspace: Path, fake_dfc: dict[str, Any]
) -> None:
    run = run_cli("--target", "hailo8", env=fake_dfc["env"])
    assert run.code == 0, run.stderr
    parity = _manifest(workspace)["parity"]
    assert run.summary["parity"] == parity
    # The fake emulator rounds the float model's outputs to 2**-6: at most half a step.
    for name in ("latent", "motif_scores"):
        assert 0.0 < parity["max_abs_error"][name] <= 2**-7 + 1e-6
        assert parity["cosine_similarity"][name] >= 0.999
        assert parity["max_abs_error"][name] <= parity["thresholds"]["max_abs_error"][name]
    assert "DFC emulator (SDK_QUANTIZED) on 256 held-out windows" in run.stderr
    assert "[dfc emulator] dfc_emulate: 256 windows through SDK_QUANTIZED" in run.stderr
    assert "float ONNX (onnxruntime) on 256 held-out windows" in run.stderr
    assert "parity latent: max abs error" in run.stderr


def test_hailo8_parity_failure_exits_5_before_the_compiler_and_keeps_old_artifacts(
    run_cli: Callable[..., Run], workspace: Path, fake_dfc: dict[str, Any]
) -> None:
    assert run_cli("--target", "hailo8", env=fake_dfc["env"]).code == 0
    out = workspace / "artifacts"
    before = snapshot(out)
    calls = len(_calls(fake_dfc["log"]))
    env = {**fake_dfc["env"], "FAKE_SDK_QUANT_STEP": "0.5"}
    run = run_cli("--target", "hailo8", "--force", env=env)
    assert run.code == 5, run.stderr
    assert run.summary["error_kind"] == "parity"
    message = run.summary["error"]
    assert message.startswith(
        "INT8 model (the DFC's quantized emulator, SDK_QUANTIZED) fails parity with the "
        "float model on 256 held-out windows:"
    )
    assert "latent: max abs error" in message
    assert "> threshold 0.15" in message
    assert "motif_scores: max abs error" in message
    assert "previous artifacts were left as they were" in message
    assert snapshot(out) == before
    assert [p for p in out.iterdir() if p.is_dir()] == []
    # The long compiler step never ran.
    steps = [c["argv"][0] for c in _calls(fake_dfc["log"])[calls:]]
    assert steps == ["--version", "parser", "optimize"]
