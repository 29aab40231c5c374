"""A LAB STAND-IN for HailoRT's two files, to test how the image takes them in.

Nothing here is HailoRT, and no figure taken with it is a HailoRT figure. It has the
shape of what a site gives the image build (sidecar/build-image.sh HAILORT_DIR, the
sidecar_image role's sidecar_image_hailort_sources):

* a .deb, ``hailo-pipeline-standin-libhailort_<version>_<arch>.deb``, with
  ``/usr/lib/libhailort.so.<version>``: a real shared object (built here with gcc) that
  exports libhailort's ``hailo_status hailo_get_library_version(hailo_version_t *)``
  (hailort.h: three uint32 fields, HAILO_SUCCESS = 0), and ``/usr/bin/hailortcli``;
* a wheel, ``hailort-<version>-py3-none-any.whl``: distribution ``hailort`` with
  pyhailort 4.23's requirements (setup.py: argcomplete, contextlib2, future, netaddr,
  netifaces, numpy<2) and a ``hailo_platform`` package that, like pyhailort's own
  ``__init__``, refuses to import when the library's version is not its own.

Only for the build host's own architecture (no cross compiler).
"""

from __future__ import annotations

import base64
import hashlib
import platform
import subprocess
import zipfile
from pathlib import Path

STAND_IN = "hailo-pipeline lab stand-in, not HailoRT"
REQUIRES = ["argcomplete", "contextlib2", "future", "netaddr", "netifaces", "numpy<2"]
_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}

_LIBRARY = """\
#include <stdint.h>
typedef struct {{ uint32_t major; uint32_t minor; uint32_t revision; }} hailo_version_t;
int hailo_get_library_version(hailo_version_t *version)
{{
    version->major = {major}; version->minor = {minor}; version->revision = {revision};
    return 0;
}}
"""

_PACKAGE = '''\
"""{stand_in}: a lab stand-in for pyhailort's hailo_platform (no device API)."""
import ctypes

STAND_IN = "{stand_in}"
__version__ = "{version}"


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32),
                ("revision", ctypes.c_uint32)]


_found = _Version()
if ctypes.CDLL("libhailort.so.{version}").hailo_get_library_version(ctypes.byref(_found)) != 0:
    raise ImportError("hailo_get_library_version failed")
_library = f"{{_found.major}}.{{_found.minor}}.{{_found.revision}}"
if _library != __version__:
    raise ImportError(f"_pyhailort version ({{_library}}) does not match pyhailort version "
                      f"({{__version__}})")
'''


def native_arch() -> str:
    return _ARCH[platform.machine()]


def _library(version: str, out: Path, scratch: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    major, minor, revision = (int(p) for p in version.split("."))
    source = scratch / "libhailort-standin.c"
    source.write_text(_LIBRARY.format(major=major, minor=minor, revision=revision))
    library = out / f"libhailort.so.{version}"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", f"-Wl,-soname,libhailort.so.{version}", "-o", str(library),
         str(source)],
        check=True,
    )  # fmt: skip
    return library


def deb(version: str, dest: Path, library_version: str | None = None) -> Path:
    """The stand-in libhailort .deb (its library may say another version)."""
    arch = native_arch()
    root = dest / "deb-root"
    lib = _library(library_version or version, root / "usr" / "lib", dest)
    if library_version:  # the file keeps the name the image looks for
        lib.rename(lib.with_name(f"libhailort.so.{version}"))
    cli = root / "usr" / "bin" / "hailortcli"
    cli.parent.mkdir(parents=True)
    cli.write_text(f"#!/bin/sh\necho 'hailortcli: {STAND_IN} {version}'\n")
    cli.chmod(0o755)
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN" / "control").write_text(
        "Package: hailo-pipeline-standin-libhailort\n"
        f"Version: {version}\nArchitecture: {arch}\n"
        "Maintainer: hailo-pipeline tests <tests@hailo-pipeline.invalid>\n"
        f"Description: {STAND_IN}\n"
    )
    out = dest / f"hailo-pipeline-standin-libhailort_{version}_{arch}.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(root), str(out)],
        check=True, capture_output=True,
    )  # fmt: skip
    return out


def wheel(version: str, dest: Path) -> Path:
    """The stand-in pyhailort wheel of ``version``."""
    info = f"hailort-{version}.dist-info"
    files = {
        "hailo_platform/__init__.py": _PACKAGE.format(stand_in=STAND_IN, version=version),
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: hailort\n"
        f"Version: {version}\nSummary: {STAND_IN}\n"
        + "".join(f"Requires-Dist: {r}\n" for r in REQUIRES),
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: hailo-pipeline-tests\n"
        "Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{name},sha256={digest.decode()},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    out = dest / f"hailort-{version}-py3-none-any.whl"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return out


def sources(root: Path, version: str, *, library_version: str | None = None) -> Path:
    """``root/<arch>/`` with the stand-in .deb and wheel of ``version`` (the library
    inside may report ``library_version``, as a mismatched pair would)."""
    arch_dir = root / native_arch()
    arch_dir.mkdir(parents=True, exist_ok=True)
    work = root / "work-deb"
    work.mkdir()
    built = deb(version, work, library_version)
    built.rename(arch_dir / built.name)
    wheel(version, arch_dir)
    return root
