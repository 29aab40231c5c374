"""The runtime image's pins (sidecar/requirements-image.txt, requirements-image-hailort.txt,
build-requirements-image.txt), the sidecar package, constraints.txt and the image files
agree. No network, no Docker."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
SIDECAR = REPO / "sidecar"
VERSION = re.search(
    r'^__version__ = "(.+)"$', (SIDECAR / "src/hailo_sidecar/__init__.py").read_text(), re.M
)[1]  # type: ignore[index]
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?$")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _locked(path: Path) -> dict[str, tuple[str, list[str]]]:
    """{name: (version, [sha256, ...])} from a hashed requirements file."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    entries: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})+)", line)
        assert match, f"{path.name}: {line!r} is not an exact pin with sha256 hashes"
        hashes = re.findall(r"sha256:([0-9a-f]{64})", match[3])
        entries[_norm(match[1])] = (match[2], hashes)
    return entries


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        pins[_norm(name)] = version.strip()
    return pins


CLOSURES = ["requirements-image.txt", "requirements-image-hailort.txt"]
# pyhailort 4.23's requirements that have wheels (netifaces has none; see the lock script).
PYHAILORT_DEPS = {"argcomplete", "contextlib2", "future", "netaddr"}


@pytest.mark.parametrize("name", [*CLOSURES, "build-requirements-image.txt"])
def test_pins_are_hashed_and_match_constraints(name: str) -> None:
    constraints = _constraints()
    if name == "requirements-image-hailort.txt":
        constraints["numpy"] = "1.26.4"  # pyhailort 4.x: numpy<2
    locked = _locked(SIDECAR / name)
    assert locked
    for package, (version, hashes) in locked.items():
        assert constraints.get(package) == version, f"{name}: {package}=={version} vs constraints"
        assert 1 <= len(hashes) <= 2, package  # one pure-Python wheel, or arm64 + amd64
        assert len(set(hashes)) == len(hashes)


@pytest.mark.parametrize("name", CLOSURES)
def test_compiled_packages_have_a_wheel_per_platform(name: str) -> None:
    locked = _locked(SIDECAR / name)
    for package in ("numpy", "onnxruntime", "orjson", "uvloop", "httptools", "pydantic-core"):
        assert len(locked[package][1]) == 2, f"{package}: need the aarch64 and x86_64 hashes"


@pytest.mark.parametrize("name", CLOSURES)
def test_closure_covers_the_package_and_the_cpu_backend(name: str) -> None:
    project = tomllib.loads((SIDECAR / "pyproject.toml").read_text())["project"]
    locked = _locked(SIDECAR / name)
    for dep in [*project["dependencies"], *project["optional-dependencies"]["onnx"]]:
        requirement = Requirement(dep)
        version = locked.get(_norm(requirement.name), ("",))[0]
        assert requirement.specifier.contains(version), (dep, version)
    # Licensed (HailoRT) or build-only packages never enter the runtime closure.
    assert not [p for p in locked if p.startswith("hailo")]
    assert "setuptools" not in locked
    assert "pip" not in locked


def test_hailort_closure_is_the_runtime_one_with_numpy_1_and_pyhailorts_requirements() -> None:
    plain = _locked(SIDECAR / "requirements-image.txt")
    hailort = _locked(SIDECAR / "requirements-image-hailort.txt")
    assert hailort["numpy"][0] == "1.26.4"
    assert set(hailort) == set(plain) | PYHAILORT_DEPS
    assert {k: v for k, v in hailort.items() if k != "numpy" and k in plain} == {
        k: v for k, v in plain.items() if k != "numpy"
    }
    # pyhailort itself comes from the site (HAILORT_DIR / sidecar_image_hailort_sources).
    assert "netifaces" not in hailort
    assert "hailort" not in hailort


def test_build_requirements_are_the_build_backend_only() -> None:
    assert set(_locked(SIDECAR / "build-requirements-image.txt")) == {"setuptools"}


def test_dockerfile_installs_offline_with_hashes() -> None:
    text = (SIDECAR / "Dockerfile").read_text()
    assert "--require-hashes" in text
    installs = re.findall(r"pip install ([^\n]*)", text)
    assert installs
    assert all("--no-index" in line for line in installs)
    assert "USER 10001:10001" in text
    assert 'CMD ["/opt/hailo-sidecar/bin/python3", "-m", "hailo_sidecar"]' in text
    assert "EXPOSE 9000" in text
    assert "curl" not in text.split("HEALTHCHECK", 1)[1].split("\n\n", 1)[0]


def test_version_is_semver() -> None:
    assert SEMVER.match(VERSION)


def test_model_image_pins_the_runtime_version_and_matches_the_model_config() -> None:
    text = (REPO / "models/tcn-encoder/Dockerfile").read_text()
    default = re.search(r"^ARG RUNTIME_IMAGE=(\S+)$", text, re.M)
    assert default
    assert default[1].endswith(f"/hailo-runtime:{VERSION}")
    assert "latest" not in default[1]
    config = yaml.safe_load((REPO / "hailo_models/tcn_encoder.yaml").read_text())
    env = dict(
        re.findall(r"^\s*(?:ENV\s+)?(MODEL_NAME|MODEL_VERSION|NUM_MOTIFS)=(\S+)", text, re.M)
    )
    assert env == {
        "MODEL_NAME": config["model"],
        "MODEL_VERSION": str(config["version"]),
        "NUM_MOTIFS": str(config["outputs"]["motif_scores"][1]),
    }
    # The artifact is mounted, never copied in.
    copies = re.findall(r"^(?:COPY|ADD)\s+(.*)$", text, re.M)
    assert copies == ["README.md /opt/hailo-sidecar/models/tcn-encoder/README.md"]
