"""The layer scan finds what it must, on a docker-save-shaped archive made here."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import image_layers
import pytest


def _tar_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def saved_image(tmp_path: Path, *layers: dict[str, bytes]) -> Path:
    """An archive laid out as `docker save` writes it: manifest.json and one tar per layer."""
    names = [f"blobs/sha256/{i:064d}" for i in range(len(layers))]
    files = {name: _tar_bytes(layer) for name, layer in zip(names, layers, strict=True)}
    files["manifest.json"] = json.dumps([{"Layers": names}]).encode()
    path = tmp_path / "image.tar"
    path.write_bytes(_tar_bytes(files))
    return path


CLEAN = {"opt/hailo-sidecar/bin/python3": b"\x7fELF", "etc/hostname": b"sidecar\n"}


def test_a_clean_image_passes_and_every_path_is_seen(tmp_path):
    offending, paths = image_layers.scan(str(saved_image(tmp_path, CLEAN)))
    assert offending == []
    assert paths == set(CLEAN)


@pytest.mark.parametrize(
    ("name", "content", "why"),
    [
        ("models/tcn_encoder.onnx", b"onnx", ""),
        ("models/tcn_encoder.hef", b"hef", ""),
        ("opt/hailo/hailo8.lic", b"licence", ""),
        ("usr/lib/libhailort.so.4.20.0", b"so", ""),
        ("root/.docker/config.json", b"{}", ""),
        ("tmp/wheels/numpy.whl", b"zip", ""),
        ("etc/ssl/private/server.pem", b"-----BEGIN EC PRIVATE KEY-----\nAAA\n", "private key"),
        ("root/.config/pip/pip.conf", b"[global]\npassword = hunter2\n", "credential"),
        ("etc/settings.yaml", b"registry: s3cr3t-registry-password\n", "secret"),
    ],
)
def test_each_kind_of_leak_is_found_in_any_layer(tmp_path, name, content, why):
    saved = saved_image(tmp_path, CLEAN, {name: content})
    offending, _ = image_layers.scan(str(saved), [b"s3cr3t-registry-password"])
    assert len(offending) >= 1
    assert all(name in entry for entry in offending)
    assert why in " ".join(offending)


def test_hailort_is_allowed_only_in_an_image_built_with_it(tmp_path):
    hailort = {"usr/lib/libhailort.so.4.23.0": b"so", "opt/x/hailo_platform/__init__.py": b""}
    saved = saved_image(tmp_path, CLEAN, hailort)
    assert len(image_layers.scan(str(saved))[0]) == 2
    assert image_layers.scan(str(saved), hailort=True)[0] == []
    # Everything else is still refused there.
    leak = saved_image(tmp_path, CLEAN, {**hailort, "models/tcn_encoder.hef": b"hef"})
    assert len(image_layers.scan(str(leak), hailort=True)[0]) == 1


def test_refuses_an_archive_that_is_not_docker_save(tmp_path):
    path = tmp_path / "not-an-image.tar"
    path.write_bytes(_tar_bytes({"hello.txt": b"hi"}))
    with pytest.raises(ValueError, match="not a docker save archive"):
        image_layers.scan(str(path))


def test_runs_as_a_script_with_the_standard_library_only(tmp_path):
    # As the fleet scenario runs it on GPUSrv: python3 -I (no site-packages), JSON out.
    saved = saved_image(tmp_path, CLEAN, {"app/key.p12": b"x"})
    out = subprocess.run(
        [sys.executable, "-I", image_layers.__file__, str(saved), "unused-secret"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = json.loads(out)
    assert result["paths"] == 3
    assert [entry.split(": ", 1)[1] for entry in result["offending"]] == ["app/key.p12"]
