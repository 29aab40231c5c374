"""What no layer of a sidecar image may hold: model artifacts, licences, keys, credentials.

One scan of a `docker save` archive, used by tests/test_sidecar_image.py (images built on
this machine) and by the fleet scenario (molecule/fleet/tests/test_4_image.py), which runs
this file with python3 on the GPUSrv stand-in, where its images are. Standard library
only, for that reason.

    python3 image_layers.py IMAGE.tar [SECRET ...]   prints {"paths": N, "offending": [...]}
"""

from __future__ import annotations

import json
import re
import sys
import tarfile

# Paths no layer may hold.
FORBIDDEN = [
    re.compile(r"\.(onnx|hef|har)$", re.I),
    re.compile(r"\.lic$|licen[cs]e[^/]*\.(lic|key|dat)$", re.I),
    re.compile(r"(^|/)(id_rsa|id_ecdsa|id_ed25519)$|\.key$|\.p12$|\.pfx$", re.I),
    re.compile(r"(^|/)\.netrc$|(^|/)pip\.conf$|(^|/)\.pypirc$", re.I),
    re.compile(r"(^|/)\.docker/config\.json$|(^|/)containers/auth\.json$", re.I),
    re.compile(r"(^|/)wheels/"),
]
# HailoRT: only in an image built with it (HAILORT_VERSION), never in any other.
HAILORT = re.compile(r"(^|/)hailort|(^|/)hailo_platform|(^|/)libhailort", re.I)
PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----")
CREDENTIAL = re.compile(rb"(?m)^\s*(password|_authToken|auth)\s*[=:]|://[^/\s:@]+:[^/\s@]+@")
CREDENTIAL_FILES = (".netrc", "pip.conf", ".pypirc", "config.json")
# Larger files are binaries and wheels' payloads: their names are checked, not their bytes.
CONTENT_LIMIT = 2_000_000


def scan(
    saved: str, secrets: list[bytes] | None = None, *, hailort: bool = False
) -> tuple[list[str], set[str]]:
    """(offending entries, every path) over all layers of a `docker save` archive.

    An entry offends by its path (FORBIDDEN; HailoRT's files too unless ``hailort``), or
    by its content: a private key, a credential in a credentials file, or any of
    `secrets` (a registry password, say).
    """
    offending: list[str] = []
    paths: set[str] = set()
    with tarfile.open(saved) as outer:
        try:
            manifest = outer.extractfile("manifest.json")
        except KeyError:
            manifest = None
        if manifest is None:
            raise ValueError(f"{saved} has no manifest.json: not a docker save archive")
        layers: list[str] = json.load(manifest)[0]["Layers"]
        if not layers:
            raise ValueError(f"{saved} lists no layers")
        for member in layers:
            fh = outer.extractfile(member)
            if fh is None:
                raise ValueError(f"{saved}: layer {member} is missing")
            with tarfile.open(fileobj=fh) as layer:
                for entry in layer:
                    name = entry.name.removeprefix("./")
                    paths.add(name)
                    if any(p.search(name) for p in FORBIDDEN) or (
                        not hailort and HAILORT.search(name)
                    ):
                        offending.append(f"{member}: {name}")
                    if not entry.isfile() or entry.size >= CONTENT_LIMIT:
                        continue
                    data = layer.extractfile(entry)
                    content = data.read() if data else b""
                    if PRIVATE_KEY.search(content):
                        offending.append(f"{member}: {name} holds a private key")
                    if name.endswith(CREDENTIAL_FILES) and CREDENTIAL.search(content):
                        offending.append(f"{member}: {name} holds a credential")
                    if any(secret in content for secret in secrets or []):
                        offending.append(f"{member}: {name} holds a secret")
    return offending, paths


if __name__ == "__main__":
    found, seen = scan(sys.argv[1], [s.encode() for s in sys.argv[2:]])
    print(json.dumps({"paths": len(seen), "offending": found}))
