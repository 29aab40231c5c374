"""Model discovery in MODELS_DIR: the configured model, verified, or a clear reason why not."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import orjson
import pytest
from hailo_sidecar.config import Config
from hailo_sidecar.discovery import DiscoveryError, discover, scan
from hailo_sidecar.manifest import sha256_of, write_manifest

from .conftest import REFERENCE_ONNX, client_for

GOOD = {"x": [[0.01 * (i + c) for c in range(9)] for i in range(100)]}


def release(
    models: Path,
    version: str = "0.1.0",
    *,
    model: str = "tcn_encoder",
    target: str = "cpu",
    num_motifs: int = 12,
) -> Path:
    """A release directory as the compiler / deploy role leave it; returns the manifest."""
    stem = f"{model}-{version}"
    directory = models / stem
    directory.mkdir(parents=True)
    artifact = directory / f"{stem}{'.onnx' if target == 'cpu' else '.hef'}"
    shutil.copyfile(REFERENCE_ONNX, artifact)
    return write_manifest(
        directory, artifact, model=model, version=version, target=target,
        num_motifs=num_motifs, filename=f"{stem}.manifest.json",
    )  # fmt: skip


def cfg(models: Path, name: str = "tcn_encoder", version: str | None = None) -> Config:
    return Config(infer_mode="onnx", models_dir=models, model_name=name, model_version=version)


def reason(config: Config) -> str | None:
    with client_for(config) as c:
        r = c.get("/readyz")
        assert c.get("/healthz").status_code == 200
        if r.status_code == 200:
            assert c.post("/infer", json=GOOD).status_code == 200
            return None
        assert c.post("/infer", json=GOOD).status_code == 503
        return str(r.json()["reason"])


def test_one_release_is_found_verified_and_served(tmp_path: Path) -> None:
    manifest = release(tmp_path)
    (tmp_path / "README.txt").write_text("not a model")  # other files are ignored
    (tmp_path / "tcn_encoder-0.1.0" / "notes.json").write_text("{}")
    assert discover(tmp_path, "tcn_encoder", None, "onnx").path == manifest
    with client_for(cfg(tmp_path)) as c:
        ready = c.get("/readyz").json()
        assert ready["ready"] is True
        assert (ready["model"], ready["version"]) == ("tcn_encoder", "0.1.0")
        assert ready["sha256"] == sha256_of(tmp_path / "tcn_encoder-0.1.0/tcn_encoder-0.1.0.onnx")


def test_models_dir_missing(tmp_path: Path) -> None:
    missing = tmp_path / "models"
    assert reason(cfg(missing)) == (
        f"MODELS_DIR={str(missing)!r} does not exist: mount the models folder there "
        "(read-only), or set MODEL_MANIFEST to a manifest file"
    )


def test_no_manifest(tmp_path: Path) -> None:
    (tmp_path / "tcn_encoder-0.1.0").mkdir()
    shutil.copyfile(REFERENCE_ONNX, tmp_path / "tcn_encoder-0.1.0" / "tcn_encoder-0.1.0.onnx")
    (tmp_path / "stray.manifest.json").write_text("{}")  # top level: not a release dir
    assert reason(cfg(tmp_path)) == (
        f"no manifest for MODEL_NAME='tcn_encoder' in MODELS_DIR={str(tmp_path)!r}; "
        "found: no manifests (*/*.manifest.json)"
    )


def test_another_model_only(tmp_path: Path) -> None:
    release(tmp_path, model="other_net", version="2.0.0")
    assert reason(cfg(tmp_path)) == (
        f"no manifest for MODEL_NAME='tcn_encoder' in MODELS_DIR={str(tmp_path)!r}; "
        "found: other_net 2.0.0 (target cpu, other_net-2.0.0/other_net-2.0.0.manifest.json)"
    )


def test_bad_sha(tmp_path: Path) -> None:
    release(tmp_path)
    artifact = tmp_path / "tcn_encoder-0.1.0" / "tcn_encoder-0.1.0.onnx"
    expected = sha256_of(artifact)
    with artifact.open("ab") as fh:
        fh.write(b"\0")
    assert reason(cfg(tmp_path)) == (
        f"sha256 mismatch for {artifact}: the manifest says {expected}, "
        f"the file is {sha256_of(artifact)}"
    )


def test_wrong_shapes(tmp_path: Path) -> None:
    manifest = release(tmp_path, num_motifs=10)
    assert reason(cfg(tmp_path)) == (
        f"manifest {manifest} has outputs {{'latent': [1, 64], 'motif_scores': [1, 10]}}, "
        "the contract with NUM_MOTIFS=12 is {'latent': [1, 64], 'motif_scores': [1, 12]}"
    )
    data = orjson.loads(manifest.read_bytes())
    data["inputs"] = {"x": [1, 50, 9]}
    data["outputs"] = {"latent": [1, 64], "motif_scores": [1, 12]}
    manifest.write_bytes(orjson.dumps(data))
    assert reason(cfg(tmp_path)) == (
        f"manifest {manifest} has inputs {{'x': [1, 50, 9]}}, the contract is {{'x': [1, 100, 9]}}"
    )


def test_several_versions_without_model_version_is_an_error(tmp_path: Path) -> None:
    release(tmp_path, "0.1.0")
    release(tmp_path, "0.2.0")
    assert reason(cfg(tmp_path)) == (
        f"several manifests for MODEL_NAME='tcn_encoder' in MODELS_DIR={str(tmp_path)!r}: "
        "tcn_encoder 0.1.0 (target cpu, tcn_encoder-0.1.0/tcn_encoder-0.1.0.manifest.json); "
        "tcn_encoder 0.2.0 (target cpu, tcn_encoder-0.2.0/tcn_encoder-0.2.0.manifest.json); "
        "set MODEL_VERSION to pick one"
    )


def test_model_version_pins_one(tmp_path: Path) -> None:
    release(tmp_path, "0.1.0")
    m2 = release(tmp_path, "0.2.0")
    assert discover(tmp_path, "tcn_encoder", "0.2.0", "onnx").path == m2
    with client_for(cfg(tmp_path, version="0.2.0")) as c:
        assert c.get("/readyz").json()["version"] == "0.2.0"
    assert reason(cfg(tmp_path, version="0.3.0")) == (
        f"no manifest for MODEL_NAME='tcn_encoder' MODEL_VERSION='0.3.0' in "
        f"MODELS_DIR={str(tmp_path)!r}; found: "
        "tcn_encoder 0.1.0 (target cpu, tcn_encoder-0.1.0/tcn_encoder-0.1.0.manifest.json); "
        "tcn_encoder 0.2.0 (target cpu, tcn_encoder-0.2.0/tcn_encoder-0.2.0.manifest.json)"
    )


def test_current_and_previous_symlinks_are_not_counted_twice(tmp_path: Path) -> None:
    m1 = release(tmp_path, "0.1.0")
    release(tmp_path, "0.2.0")
    os.symlink("tcn_encoder-0.2.0", tmp_path / "current")
    os.symlink("tcn_encoder-0.1.0", tmp_path / "previous")
    found = scan(tmp_path)
    assert [m.path for m in found.manifests] == [
        m1,
        tmp_path / "tcn_encoder-0.2.0" / "tcn_encoder-0.2.0.manifest.json",
    ]
    assert discover(tmp_path, "tcn_encoder", "0.1.0", "onnx").path == m1


def test_wrong_target_for_the_mode(tmp_path: Path) -> None:
    release(tmp_path, target="hailo8")
    assert reason(cfg(tmp_path)) == (
        "INFER_MODE=onnx needs a manifest with target 'cpu' (.onnx), but "
        f"MODEL_NAME='tcn_encoder' in MODELS_DIR={str(tmp_path)!r} has only: "
        "tcn_encoder 0.1.0 (target hailo8, tcn_encoder-0.1.0/tcn_encoder-0.1.0.manifest.json)"
    )
    cpu_only = tmp_path / "cpu"
    release(cpu_only)
    with pytest.raises(DiscoveryError, match=r"INFER_MODE=hailo needs a manifest with target "
                       r"'hailo8' \(\.hef\)"):  # fmt: skip
        discover(cpu_only, "tcn_encoder", None, "hailo")


def test_same_version_for_both_targets_picks_the_one_for_the_mode(tmp_path: Path) -> None:
    cpu = release(tmp_path / "a")
    shutil.move(cpu.parent, tmp_path / "tcn_encoder-0.1.0-cpu")
    release(tmp_path, target="hailo8")
    found = discover(tmp_path, "tcn_encoder", "0.1.0", "onnx")
    assert found.target == "cpu"
    assert discover(tmp_path, "tcn_encoder", "0.1.0", "hailo").target == "hailo8"


def test_an_artifact_that_does_not_fit_the_target(tmp_path: Path) -> None:
    manifest = release(tmp_path)
    data = orjson.loads(manifest.read_bytes())
    data["artifact"] = "tcn_encoder-0.1.0.hef"
    manifest.write_bytes(orjson.dumps(data))
    assert reason(cfg(tmp_path)) == (
        f"manifest {manifest} names artifact 'tcn_encoder-0.1.0.hef', but target 'cpu' "
        "(INFER_MODE=onnx) needs a .onnx file"
    )


def test_an_unreadable_manifest_of_another_model_does_not_block(tmp_path: Path) -> None:
    release(tmp_path)
    broken = tmp_path / "junk-1.0.0"
    broken.mkdir()
    (broken / "junk-1.0.0.manifest.json").write_text("{nope")
    assert reason(cfg(tmp_path)) is None
    assert reason(cfg(tmp_path, name="junk")) == (
        f"no manifest for MODEL_NAME='junk' in MODELS_DIR={str(tmp_path)!r}; found: "
        "tcn_encoder 0.1.0 (target cpu, tcn_encoder-0.1.0/tcn_encoder-0.1.0.manifest.json); "
        f"unreadable: model manifest {broken / 'junk-1.0.0.manifest.json'} is not valid JSON: "
        "unexpected character, expected a string key: line 1 column 2 (char 1)"
    )


def test_model_manifest_overrides_discovery(tmp_path: Path) -> None:
    release(tmp_path / "models", "0.1.0")
    release(tmp_path / "models", "0.2.0")  # ambiguous for discovery
    manifest = release(tmp_path / "elsewhere", "0.9.0")
    config = Config(
        infer_mode="onnx", model_manifest=manifest, models_dir=tmp_path / "models",
        model_name="tcn_encoder",
    )  # fmt: skip
    with client_for(config) as c:
        assert c.get("/readyz").json()["version"] == "0.9.0"
    pinned = Config(infer_mode="onnx", model_manifest=manifest, model_version="0.1.0")
    assert reason(pinned) == (
        f"manifest {manifest} (MODEL_MANIFEST) is for '0.9.0', but MODEL_VERSION='0.1.0'"
    )
    named = Config(infer_mode="onnx", model_manifest=manifest, model_name="other")
    assert reason(named) == (
        f"manifest {manifest} (MODEL_MANIFEST) is for 'tcn_encoder', but MODEL_NAME='other'"
    )


def test_stub_needs_no_model(tmp_path: Path) -> None:
    assert reason(Config(infer_mode="stub", models_dir=tmp_path / "nothing")) is None
