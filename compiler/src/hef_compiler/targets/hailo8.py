"""Target ``hailo8``: drive the Hailo Dataflow Compiler (DFC) command line.

The DFC is licensed and never part of the compiler image. It is mounted at run time
(a Python environment with the ``hailo_dataflow_compiler`` wheel installed, whose
``bin/`` holds the ``hailo`` command) and found through ``HAILO_DFC_HOME`` (its
``bin/`` is searched first) or ``PATH``. Three steps, as in the DFC user guide:

    hailo parser onnx <model.onnx> --net-name N --hw-arch hailo8 --har-path N.har
          --start-node-names ... --end-node-names ...   (no -y: see commands())
    <dfc>/bin/python dfc_har_info.py --har N.har        -> the input layer's shape
    hailo optimize N.har --hw-arch hailo8 --calib-set-path calib_set.npy
          --output-har-path N_optimized.har [--model-script S.alls]
    <dfc>/bin/python dfc_emulate.py --har N_optimized.har ...  -> INT8 parity
    hailo compiler N_optimized.har --hw-arch hailo8 --output-dir D
          --output-har-path N_compiled.har                      -> D/N.hef
    <dfc>/bin/python dfc_hef_info.py --hef D/N.hef      -> the HEF's streams

Two checks around the compiler. Parity: the DFC's quantized emulator (SDK_QUANTIZED
on the optimized HAR, as for the golden vectors) and the float ONNX (onnxruntime) run
on the held-out windows; the figures must meet the config's ``parity`` thresholds
(else exit 5, before the compiler runs) and go into the manifest. Streams: HailoRT's
``hailo_platform.HEF`` (in the DFC environment: the DFC wheel depends on the hailort
wheel) lists the HEF's network groups and vstreams; one network group, one input
stream of one window and one output stream per contract output (matched by the ONNX
names among the stream's original names, else by width) are required (else exit 4),
and the streams are recorded in the manifest's ``hef_streams``.

The DFC runs in a scratch directory (it writes its own logs into the working
directory), with HOME and TMPDIR inside it too: the job runs with a read-only root and
HOME=/nonexistent. Only the .hef is kept. Before anything runs, the DFC environment's
interpreter is checked: a venv's ``bin/python`` is a symlink to the interpreter that
made it, which a container may not have at that path. If the DFC needs a licence
file, its path comes from ``HAILO_DFC_LICENSE_FILE`` in the environment (mounted
read-only): it is checked to exist and passed through in the environment, never read,
copied or recorded.

NOT EXERCISED HERE: no DFC or HailoRT is installable in this project's lab; the tests
check the exact argv lists, the guardrails, and the sequence against a fake ``hailo``,
and both checks above only against fake ``hailo_sdk_client`` and ``hailo_platform``
modules written from Hailo's documented (DFC) and published (HailoRT) Python APIs.
"""

from __future__ import annotations

import collections
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from hef_compiler import calibration as calib
from hef_compiler import parity, progress
from hef_compiler.artifacts import STAGING_PREFIX
from hef_compiler.config import ModelConfig
from hef_compiler.errors import ConfigError, ToolchainError
from hef_compiler.golden import GoldenOutputs
from hef_compiler.onnx_check import ValidatedModel
from hef_compiler.parity import ParityFigures
from hef_compiler.targets import BuildResult

ENV_HOME = "HAILO_DFC_HOME"
ENV_LICENSE = "HAILO_DFC_LICENSE_FILE"
DFC_EXECUTABLE = "hailo"
# Run by the DFC's own interpreter (beside `hailo`): they need hailo_sdk_client.
EMULATE_SCRIPT = Path(__file__).resolve().parents[1] / "dfc_emulate.py"
HAR_INFO_SCRIPT = Path(__file__).resolve().parents[1] / "dfc_har_info.py"
# Needs HailoRT's hailo_platform, which the DFC wheel depends on.
HEF_INFO_SCRIPT = Path(__file__).resolve().parents[1] / "dfc_hef_info.py"
WHERE_TO_GET = (
    "The Hailo Dataflow Compiler is a licensed download from the Hailo Developer Zone "
    "(https://hailo.ai/developer-zone/software-downloads/, sign-in required). Install it "
    "on the build host (a Python environment with the hailo_dataflow_compiler wheel), "
    f"mount it read-only into the container and point {ENV_HOME} at it, e.g. "
    f"-v /opt/hailo-dfc:/opt/hailo-dfc:ro -e {ENV_HOME}=/opt/hailo-dfc"
)
_TAIL_LINES = 40
_VERSION_PATTERNS = (
    re.compile(r"(?i)dataflow\s+compiler\D{0,20}?v?(\d+\.\d+(?:\.\d+)?)"),
    re.compile(r"(?i)\bv?(\d+\.\d+\.\d+)\b"),
)


@dataclass(frozen=True)
class DfcCommands:
    """The three DFC invocations, as argv lists, and the files they produce."""

    parse: list[str]
    optimize: list[str]
    compile: list[str]
    har: Path
    optimized_har: Path
    compiled_har: Path
    hef: Path
    calib_set: Path
    model_script: Path


def search_dirs(env: Mapping[str, str]) -> list[str]:
    """Where ``hailo`` is looked for, in order: $HAILO_DFC_HOME/bin, then $PATH."""
    dirs: list[str] = []
    home = env.get(ENV_HOME)
    if home:
        dirs.append(str(Path(home) / "bin"))
    dirs += [d for d in env.get("PATH", "").split(os.pathsep) if d]
    return dirs


def find_hailo(env: Mapping[str, str]) -> Path:
    dirs = search_dirs(env)
    for d in dirs:
        candidate = Path(d) / DFC_EXECUTABLE
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    home = env.get(ENV_HOME)
    home_note = f"{ENV_HOME}={home}" if home else f"{ENV_HOME} is not set"
    raise ToolchainError(
        f"Hailo Dataflow Compiler not found: no executable '{DFC_EXECUTABLE}' in "
        f"{os.pathsep.join(dirs) or '(empty PATH)'} ({home_note}). {WHERE_TO_GET}"
    )


def dfc_env(env: Mapping[str, str]) -> dict[str, str]:
    """The DFC's environment: ours, with $HAILO_DFC_HOME/bin first on PATH."""
    out = dict(env)
    home = env.get(ENV_HOME)
    if home:
        out["PATH"] = os.pathsep.join([str(Path(home) / "bin"), env.get("PATH", "")]).rstrip(
            os.pathsep
        )
    return out


def check_license(env: Mapping[str, str]) -> None:
    """If a licence path is given, it must be a readable file; its content is never read."""
    path = env.get(ENV_LICENSE)
    if not path:
        return
    p = Path(path)
    if not p.is_file() or not os.access(p, os.R_OK):
        raise ToolchainError(
            f"{ENV_LICENSE}={path}: no readable file there. Mount the DFC licence read-only "
            f"into the container (e.g. -v /etc/hailo/license:{path}:ro); it is never copied "
            "into an image or the artifacts."
        )


def _shebang(script: Path) -> str | None:
    """The interpreter a script's ``#!`` line names (absolute paths only), else None."""
    try:
        with script.open("rb") as fh:
            first = fh.readline(4096)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode("utf-8", "replace").split()
    return words[0] if words and words[0].startswith("/") else None


def check_interpreter(hailo: Path) -> None:
    """The DFC environment's Python must exist in this container.

    A venv's ``bin/python`` is a symlink to the interpreter that created it (e.g.
    /usr/bin/python3.10 or a pyenv path on the build host); mounted into the compiler
    image that target may be missing, and every DFC step would fail with a bare
    "No such file or directory". Checked: ``bin/python`` beside ``hailo`` and the
    interpreter named by ``hailo``'s ``#!`` line.
    """
    candidates: list[Path] = []
    beside = hailo.parent / "python"
    if os.path.lexists(beside):
        candidates.append(beside)
    named = _shebang(hailo)
    if named is not None and Path(named) not in candidates:
        candidates.append(Path(named))
    for path in candidates:
        if os.path.exists(path):
            continue
        fix = (
            "Create the DFC environment with an interpreter the compiler image has at the "
            "same path (python3.11 at /usr/bin/python3.11: `/usr/bin/python3.11 -m venv "
            "/opt/hailo-dfc`, then install the hailo_dataflow_compiler wheel into it), or "
            "build a private compiler image with the DFC inside (never pushed to a public "
            f"registry). {WHERE_TO_GET}"
        )
        if os.path.islink(path):
            raise ToolchainError(
                f"the DFC environment's interpreter is missing: {path} is a symlink to "
                f"{os.readlink(path)} (resolves to {os.path.realpath(path)}), which does "
                f"not exist in this container. {fix}"
            )
        raise ToolchainError(
            f"the DFC environment's interpreter is missing: {hailo} starts with "
            f"#!{path}, which does not exist in this container. {fix}"
        )


def scratch_env(env: Mapping[str, str], dfc_dir: Path) -> dict[str, str]:
    """The DFC's environment for one compile: HOME and TMPDIR inside ``dfc_dir``'s parent
    (the job's work directory, on the writable output mount), created here."""
    work = dfc_dir.parent
    home, tmp = work / "home", work / "tmp"
    home.mkdir(exist_ok=True)
    tmp.mkdir(exist_ok=True)
    return {**dfc_env(env), "HOME": str(home), "TMPDIR": str(tmp)}


def parse_version(text: str) -> str | None:
    for pattern in _VERSION_PATTERNS:
        m = pattern.search(text)
        if m:
            return m.group(1)
    return None


def dfc_version(hailo: Path, env: Mapping[str, str], scratch: Path | None = None) -> str:
    """The DFC's version from ``hailo --version`` (``unknown`` when it prints none).

    With ``scratch``, it runs in a temporary directory there (also its HOME and TMPDIR),
    removed afterwards; the next run's lock clears one left by a killed run."""
    if scratch is None:
        return _dfc_version(hailo, dfc_env(env), None)
    with tempfile.TemporaryDirectory(prefix=f"{STAGING_PREFIX}version-", dir=scratch) as tmp:
        return _dfc_version(hailo, {**dfc_env(env), "HOME": tmp, "TMPDIR": tmp}, Path(tmp))


def _dfc_version(hailo: Path, env: Mapping[str, str], cwd: Path | None) -> str:
    try:
        proc = subprocess.run(
            [str(hailo), "--version"],
            env=dict(env),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolchainError(
            f"found {hailo} but it did not run ({exc}). A DFC environment mounted into the "
            "container must have been created with an interpreter that exists in the "
            f"container (/usr/bin/python3.11). {WHERE_TO_GET}"
        ) from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise ToolchainError(
            f"'{hailo} --version' failed with exit {proc.returncode}: "
            + " | ".join(tail)
            + f". {WHERE_TO_GET}"
        )
    return parse_version(proc.stdout + "\n" + proc.stderr) or "unknown"


def commands(hailo: Path, cfg: ModelConfig, onnx_path: Path, workdir: Path) -> DfcCommands:
    """The exact DFC command lines for ``cfg``; files go into ``workdir``."""
    net, arch = cfg.net_name, cfg.hw_arch
    har = workdir / f"{net}.har"
    optimized = workdir / f"{net}_optimized.har"
    compiled = workdir / f"{net}_compiled.har"
    calib_set = workdir / "calib_set.npy"
    parse = [
        str(hailo), "parser", "onnx", str(onnx_path),
        "--net-name", net,
        "--hw-arch", arch,
        "--har-path", str(har),
        "--start-node-names", *cfg.dfc.start_node_names,
        "--end-node-names", *cfg.dfc.end_node_names,
    ]  # fmt: skip
    # No -y: it only answers "yes" to the parser's own end-node recommendation after a
    # failed parse (hailo_model_zoo passes y=True to the DFC's NetParser; users show the
    # prompt, e.g. ankandrew/fast-plate-ocr#44). Our end nodes are explicit; a prompt
    # reads EOF from /dev/null and the step fails with the recommendation in its output.
    script = workdir / "model_script.alls"
    optimize = [
        str(hailo), "optimize", str(har),
        "--hw-arch", arch,
        "--calib-set-path", str(calib_set),
        "--output-har-path", str(optimized),
        # Always ours (model_script()): the config's script, the level, the calibset size.
        "--model-script", str(script),
    ]  # fmt: skip
    compile_ = [
        str(hailo), "compiler", str(optimized),
        "--hw-arch", arch,
        "--output-dir", str(workdir),
        "--output-har-path", str(compiled),
    ]  # fmt: skip
    return DfcCommands(
        parse=parse,
        optimize=optimize,
        compile=compile_,
        har=har,
        optimized_har=optimized,
        compiled_har=compiled,
        hef=workdir / f"{net}.hef",
        calib_set=calib_set,
        model_script=script,
    )


# The DFC's optimization levels (0-4, default 2) and its own fallback: with fewer than
# 1024 calibration samples it drops to 1, and without a GPU to 0, printing
# "[warning] Reducing optimization level to 0 (...) because there's less data than the
# recommended amount (1024), and there's no available GPU" (quoted in public DFC logs).
# model_optimization_flavor(optimization_level=N) sets it; calibset_size (default 64:
# fewer samples than we give would be used) sets how many samples calibration takes.
RECOMMENDED_CALIBRATION = 1024
_FLAVOR = re.compile(r"model_optimization_flavor\s*\([^)]*optimization_level\s*=\s*(\d)")
_CALIBRATION_CONFIG = re.compile(r"model_optimization_config\s*\(\s*calibration\b")
_REPORTED_LEVEL = (
    re.compile(r"(?i)reducing optimization level to (\d)"),
    re.compile(r"(?i)using default optimization level of (\d)"),
    re.compile(r"(?i)optimization level (?:is |set to )?(\d)\b"),
)
_LEVEL_MESSAGE = re.compile(r"(?i)optimization level|zero level of optimization")


def _user_script(cfg: ModelConfig) -> str:
    path = cfg.dfc.model_script
    if path is None:
        return ""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"{cfg.source}: key 'dfc.model_script': cannot read {path}: {exc.strerror}"
        ) from exc


def model_script(cfg: ModelConfig, windows: int) -> str:
    """The model script given to ``hailo optimize``: the config's ``dfc.model_script``,
    then the optimization level (``dfc.optimization_level``) and the calibration size
    (all ``windows``), unless the config's script sets them itself."""
    user = _user_script(cfg)
    lines = ["# written by hef-compile for `hailo optimize`"]
    if user:
        lines += [f"# from {cfg.dfc.model_script}", user.rstrip("\n")]
    level = cfg.dfc.optimization_level
    if level is not None:
        if _FLAVOR.search(user):
            raise ConfigError(
                f"{cfg.source}: key 'dfc.optimization_level' is set and {cfg.dfc.model_script} "
                "sets model_optimization_flavor(optimization_level=...) too: set the level "
                "in one place"
            )
        lines.append(f"model_optimization_flavor(optimization_level={level})")
    if not _CALIBRATION_CONFIG.search(user):
        lines.append(f"model_optimization_config(calibration, calibset_size={windows})")
    return "\n".join(lines) + "\n"


def planned_level(cfg: ModelConfig) -> tuple[int | None, str]:
    """The level asked for and where it comes from (``None``: the DFC decides)."""
    if cfg.dfc.optimization_level is not None:
        return cfg.dfc.optimization_level, "dfc.optimization_level"
    m = _FLAVOR.search(_user_script(cfg))
    if m:
        return int(m.group(1)), "dfc.model_script"
    return None, "DFC (reported)"


def optimization_record(cfg: ModelConfig, windows: int, output: list[str]) -> dict[str, Any]:
    """The manifest's ``optimization``: the level (asked for, else what the DFC said it
    used), where it came from, the calibration windows and the DFC's lines about it."""
    level, set_by = planned_level(cfg)
    messages = [line.strip() for line in output if _LEVEL_MESSAGE.search(line)]
    if level is None:
        for line in messages:
            found = next((p.search(line) for p in _REPORTED_LEVEL if p.search(line)), None)
            if found:
                level = int(found.group(1))
                break
        if level is None:
            set_by = "unknown (the DFC reported none)"
    return {
        "optimization_level": level,
        "set_by": set_by,
        "calibration_windows": windows,
        "dfc_messages": messages,
    }


def run_step(step: str, argv: list[str], env: Mapping[str, str], cwd: Path) -> list[str]:
    """Run one DFC step, streaming its output to stderr; fail with its last lines."""
    progress.say(f"$ {shlex.join(argv)}")
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
    except OSError as exc:
        raise ToolchainError(f"DFC step '{step}' could not start: {exc}. {WHERE_TO_GET}") from exc
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        tail.append(line.rstrip("\n"))
        print(f"[dfc {step}] {line}", end="", file=sys.stderr, flush=True)
    code = proc.wait()
    if code != 0:
        last = "\n".join(f"    {t}" for t in tail) or "    (no output)"
        raise ToolchainError(
            f"DFC step '{step}' failed with exit {code}: {shlex.join(argv)}\n"
            f"  last {len(tail)} lines of its output:\n{last}"
        )
    return lines


def calibration_samples(windows: np.ndarray, layer_shape: list[int]) -> np.ndarray:
    """The calibration windows (N, 100, 9) in the parsed input layer's shape per sample.

    The DFC checks each calibration sample against the input layer's shape without the
    batch (NHWC): (1, 100, 9) for this model's Conv input, not the ONNX's (100, 9). The
    window's values keep their order (a reshape): NHWC (1, 100, 9) is the same memory
    as the window (100 samples x 9 channels).
    """
    per_sample = tuple(int(d) for d in layer_shape[1:])
    want = int(np.prod(windows.shape[1:]))
    if not per_sample or min(per_sample) < 1 or int(np.prod(per_sample)) != want:
        raise ToolchainError(
            f"the parsed network's input layer shape {list(layer_shape)} does not hold one "
            f"window of {want} values ({windows.shape[1]} samples x {windows.shape[2]} "
            "channels); check dfc.start_node_names in the model config"
        )
    return np.ascontiguousarray(windows.reshape((len(windows), *per_sample)), dtype=np.float32)


def _expect(path: Path, step: str) -> None:
    if not path.is_file():
        raise ToolchainError(f"DFC step '{step}' exited 0 but did not write {path}")


def _collect_hef(cmds: DfcCommands, before: set[Path]) -> Path:
    if cmds.hef.is_file():
        return cmds.hef
    new = sorted(p for p in cmds.hef.parent.glob("*.hef") if p not in before)
    if len(new) == 1:
        return new[0]
    listing = ", ".join(p.name for p in new) or "none"
    raise ToolchainError(
        f"DFC step 'compiler' exited 0 but {cmds.hef} is missing (new .hef files: {listing})"
    )


def output_candidates(model: onnx.ModelProto, outputs: Iterable[str]) -> dict[str, list[str]]:
    """Per contract output, the ONNX names HailoRT may list among a vstream's original
    names: the output tensor's own name and the node that produces it (an end node,
    e.g. ``motif_prob`` for ``motif_scores``)."""
    producers = {out: node.name for node in model.graph.node for out in node.output if node.name}
    return {name: [n for n in (name, producers.get(name)) if n] for name in outputs}


def _width(stream: Mapping[str, Any]) -> int:
    return int(np.prod([int(d) for d in stream["shape"]]))


def _describe(stream: Mapping[str, Any]) -> str:
    names = ", ".join(stream.get("original_names") or []) or "no original names"
    return f"{stream['name']} {list(stream['shape'])} ({_width(stream)} values; from {names})"


def check_hef_streams(
    info: Mapping[str, Any], cfg: ModelConfig, candidates: Mapping[str, list[str]]
) -> dict[str, Any]:
    """Check the HEF's vstreams (``dfc_hef_info.py``'s JSON) against the contract and
    return the manifest's ``hef_streams``.

    Exactly one network group and one input stream holding one window; each contract
    output is matched to an output stream first by its ONNX names (``candidates``) among
    the stream's original names, else by width (values per window), and must have the
    contract's width; every output stream must be matched."""
    groups = [str(g) for g in info.get("network_groups") or []]
    inputs = list(info.get("inputs") or [])
    outputs = list(info.get("outputs") or [])
    listing = (
        "HEF input streams: "
        + ("; ".join(_describe(s) for s in inputs) or "none")
        + "; output streams: "
        + ("; ".join(_describe(s) for s in outputs) or "none")
    )
    if len(groups) != 1:
        raise ToolchainError(
            f"the compiled HEF has {len(groups)} network groups ({', '.join(groups) or 'none'}); "
            f"expected exactly one ({cfg.net_name}). {listing}"
        )
    in_name, in_shape = next(iter(cfg.inputs.items()))
    want_in = int(np.prod(in_shape[1:]))
    if len(inputs) != 1 or _width(inputs[0]) != want_in:
        raise ToolchainError(
            f"the compiled HEF has {len(inputs)} input stream(s); expected exactly one holding "
            f"one window of {want_in} values (contract input {in_name} {list(in_shape)}); "
            f"check dfc.start_node_names. {listing}"
        )
    matched: dict[str, tuple[dict[str, Any], str]] = {}
    problems: list[str] = []
    ambiguous: set[str] = set()
    for name in cfg.outputs:
        hits = [s for s in outputs if set(s.get("original_names") or []) & set(candidates[name])]
        if len(hits) > 1:
            ambiguous.add(name)
            problems.append(
                f"{name}: {len(hits)} streams come from {' / '.join(candidates[name])}: "
                + ", ".join(s["name"] for s in hits)
            )
        elif hits:
            matched[name] = (hits[0], "original_name")
    by_stream: dict[str, list[str]] = {}
    for name, (stream, _) in matched.items():
        by_stream.setdefault(stream["name"], []).append(name)
    for stream_name, names in by_stream.items():
        if len(names) > 1:
            problems.append(f"stream {stream_name} comes from the ONNX names of {', '.join(names)}")
    for name, shape in cfg.outputs.items():
        if name in matched or name in ambiguous:
            continue
        want = int(np.prod(shape[1:]))
        free = [s for s in outputs if s["name"] not in by_stream and _width(s) == want]
        if len(free) == 1:
            matched[name] = (free[0], "width")
            by_stream[free[0]["name"]] = [name]
        else:
            problems.append(
                f"{name}: no stream from {' / '.join(candidates[name])}, and "
                f"{len(free)} unmatched streams of width {want} (expected one)"
            )
    for name, (stream, how) in matched.items():
        want = int(np.prod(cfg.outputs[name][1:]))
        if _width(stream) != want:
            problems.append(
                f"{name}: stream {stream['name']} (matched by {how.replace('_', ' ')}) holds "
                f"{_width(stream)} values per window, the contract has {want} "
                f"({name} {list(cfg.outputs[name])})"
            )
    problems += [
        f"stream {_describe(s)} matches no contract output"
        for s in outputs
        if s["name"] not in by_stream
    ]
    if problems:
        expected = ", ".join(
            f"{name} {list(shape)} (from {' / '.join(candidates[name])})"
            for name, shape in cfg.outputs.items()
        )
        raise ToolchainError(
            "the compiled HEF's output streams do not match the contract:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + f"\n  expected: {expected}\n  {listing}\n"
            "(check dfc.end_node_names in the model config)"
        )
    return {
        "network_group": groups[0],
        "inputs": [{**inputs[0], "contract": in_name}],
        "outputs": [
            {**matched[name][0], "contract": name, "matched_by": matched[name][1]}
            for name in cfg.outputs
        ],
    }


class Hailo8Target:
    name = "hailo8"

    def __init__(self, env: Mapping[str, str] | None = None, scratch: Path | None = None) -> None:
        self.env: dict[str, str] = dict(os.environ if env is None else env)
        self.scratch = scratch
        self._hailo: Path | None = None
        self._version: str | None = None

    def hailo(self) -> Path:
        if self._hailo is None:
            hailo = find_hailo(self.env)
            check_interpreter(hailo)
            self._hailo = hailo
        return self._hailo

    def backend(self) -> str:
        if self._version is None:
            self._version = dfc_version(self.hailo(), self.env, self.scratch)
        return f"hailo DFC {self._version}"

    def python(self) -> Path:
        """The DFC environment's interpreter, which has hailo_sdk_client: ``bin/python``
        beside ``hailo`` (a venv), else the interpreter on ``hailo``'s ``#!`` line."""
        hailo = self.hailo()
        beside = hailo.parent / "python"
        if beside.exists():
            return beside
        named = _shebang(hailo)
        if named is not None and os.path.exists(named):
            return Path(named)
        raise ToolchainError(
            f"no Python for the DFC: {beside} is missing and {hailo} names no interpreter "
            "on its #! line; reading the HAR and the quantized emulator run with the Python "
            "of the DFC's environment (the one with hailo_sdk_client)"
        )

    def input_layer_shape(self, har: Path, dfc_dir: Path, env: Mapping[str, str]) -> list[int]:
        """The parsed HAR's single input layer shape (NHWC, batch -1), read by the DFC."""
        out = dfc_dir / "har_info.json"
        argv = [str(self.python()), str(HAR_INFO_SCRIPT), "--har", str(har), "--output", str(out)]
        with progress.step("DFC: reading the parsed input layer shape from the HAR"):
            run_step("har-info", argv, env, dfc_dir)
        _expect(out, "har-info")
        inputs = json.loads(out.read_text(encoding="utf-8")).get("inputs") or []
        if len(inputs) != 1:
            raise ToolchainError(
                f"the parsed network has {len(inputs)} input layers ({inputs}); the contract "
                "has one input: check dfc.start_node_names in the model config"
            )
        shape = [int(d) for d in inputs[0]["shape"]]
        progress.say(f"parsed input layer shape: {shape} ({inputs[0]['name']})")
        return shape

    def hef_streams(self, hef: Path, dfc_dir: Path, env: Mapping[str, str]) -> dict[str, Any]:
        """The HEF's network groups and vstreams, read by HailoRT (``dfc_hef_info.py``)."""
        out = dfc_dir / "hef_info.json"
        argv = [str(self.python()), str(HEF_INFO_SCRIPT), "--hef", str(hef), "--output", str(out)]
        with progress.step("HailoRT: reading the HEF's network groups and streams"):
            run_step("hef-info", argv, env, dfc_dir)
        _expect(out, "hef-info")
        info = json.loads(out.read_text(encoding="utf-8"))
        if not isinstance(info, dict):
            raise ToolchainError(f"{out}: not a JSON object")
        return info

    def emulate(
        self, cfg: ModelConfig, dfc_dir: Path, windows: np.ndarray, stem: str, label: str
    ) -> dict[str, np.ndarray]:
        """The DFC's quantized emulator (SDK_QUANTIZED, ``dfc_emulate.py``) on the
        optimized HAR: ``{output: (N, values per window)}`` for ``windows`` (N, 100, 9).
        Used for the golden vectors and for parity; files ``<stem>_*`` in ``dfc_dir``."""
        har = dfc_dir / f"{cfg.net_name}_optimized.har"
        _expect(har, "optimize")
        python = self.python()
        given = calib.save_windows(windows, dfc_dir / f"{stem}_windows.npy")
        out = dfc_dir / f"{stem}_outputs.npz"
        argv = [str(python), str(EMULATE_SCRIPT), "--har", str(har), "--windows", str(given)]
        argv += ["--output", str(out)]
        for name, shape in cfg.outputs.items():
            argv += ["--output-width", f"{name}={int(np.prod(shape[1:]))}"]
        with progress.step(f"DFC emulator (SDK_QUANTIZED) on {len(windows)} {label} windows"):
            run_step("emulator", argv, scratch_env(self.env, dfc_dir), dfc_dir)
        _expect(out, "emulator")
        with np.load(out, allow_pickle=False) as data:
            return {name: data[name].astype(np.float32) for name in cfg.outputs}

    def measure_parity(self, cfg: ModelConfig, dfc_dir: Path) -> ParityFigures:
        """The quantized emulator against the float ONNX (onnxruntime) on the held-out
        windows; raises ParityError when a threshold is missed."""
        holdout = calib.holdout_windows(cfg.parity.holdout_windows, cfg.parity.holdout_seed)
        quantized = self.emulate(cfg, dfc_dir, holdout, "holdout", "held-out")
        names = list(cfg.outputs)
        with progress.step(f"float ONNX (onnxruntime) on {len(holdout)} held-out windows"):
            expected = parity.run_windows(cfg.onnx_path, holdout, cfg.input_name, names)
        figures = parity.measure(expected, quantized, names)
        parity.enforce(figures, cfg, "INT8 model (the DFC's quantized emulator, SDK_QUANTIZED)")
        return figures

    def build(
        self,
        cfg: ModelConfig,
        model: ValidatedModel,
        calibration: np.ndarray,
        work: Path,
        artifact_name: str,
    ) -> BuildResult:
        check_license(self.env)
        hailo = self.hailo()
        backend = self.backend()
        progress.say(f"using {hailo} ({backend})")
        dfc_dir = work / "dfc"
        dfc_dir.mkdir(parents=True, exist_ok=True)
        cmds = commands(hailo, cfg, cfg.onnx_path, dfc_dir)
        env = scratch_env(self.env, dfc_dir)
        with progress.step("DFC parser (ONNX -> HAR)"):
            run_step("parser", cmds.parse, env, dfc_dir)
        _expect(cmds.har, "parser")
        layer_shape = self.input_layer_shape(cmds.har, dfc_dir, env)
        calib.save_windows(calibration_samples(calibration, layer_shape), cmds.calib_set)
        windows = len(calibration)
        cmds.model_script.write_text(model_script(cfg, windows), encoding="utf-8")
        level, set_by = planned_level(cfg)
        if level is None:
            progress.say(
                "warning: no dfc.optimization_level (nor one in dfc.model_script): the DFC "
                f"picks it; with {windows} calibration windows "
                + (
                    f"(fewer than {RECOMMENDED_CALIBRATION}) it drops to level 1 with a "
                    "GPU and to 0 without one"
                    if windows < RECOMMENDED_CALIBRATION
                    else "it uses level 2 with a GPU and drops to 0 without one"
                )
                + "; the level it reports is recorded in the manifest"
            )
        elif level > 0 and windows < RECOMMENDED_CALIBRATION:
            progress.say(
                f"warning: optimization level {level} ({set_by}) with {windows} calibration "
                f"windows: the DFC recommends at least {RECOMMENDED_CALIBRATION} above level 0"
            )
        with progress.step(f"DFC optimize (INT8, {windows} calibration windows, level {level})"):
            output = run_step("optimize", cmds.optimize, env, dfc_dir)
        _expect(cmds.optimized_har, "optimize")
        optimization = optimization_record(cfg, windows, output)
        # Before the compiler (the long step): a model that misses parity is not compiled.
        figures = self.measure_parity(cfg, dfc_dir)
        before = set(dfc_dir.glob("*.hef"))
        with progress.step("DFC compiler (HAR -> HEF)"):
            run_step("compiler", cmds.compile, env, dfc_dir)
        hef = _collect_hef(cmds, before)
        streams = check_hef_streams(
            self.hef_streams(hef, dfc_dir, env),
            cfg,
            output_candidates(model.model, cfg.outputs),
        )
        for kind in ("inputs", "outputs"):
            for item in streams[kind]:
                progress.say(
                    f"HEF {kind[:-1]} {item['name']} {item['shape']} -> {item['contract']}"
                    + (f" (matched by {item['matched_by']})" if "matched_by" in item else "")
                )
        artifact = work / artifact_name
        os.replace(hef, artifact)
        return BuildResult(
            artifact=artifact,
            backend=backend,
            parity=figures,
            optimization=optimization,
            hef_streams=streams,
        )

    def reference(
        self, cfg: ModelConfig, work: Path, artifact: Path, windows: np.ndarray
    ) -> GoldenOutputs:
        """The DFC's quantized emulator (SDK_QUANTIZED) on the optimized HAR: the numbers
        the Hailo-8 is meant to give for this HEF."""
        outputs = self.emulate(cfg, work / "dfc", windows, "golden", "golden")
        return GoldenOutputs(
            outputs=outputs, produced_by=f"{self.backend()} quantized emulator (SDK_QUANTIZED)"
        )
