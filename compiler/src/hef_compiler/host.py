"""What this machine must be to run a compile."""

from __future__ import annotations

import platform

from hef_compiler.errors import HostError

SUPPORTED_MACHINES = ("x86_64", "AMD64")


def require_x86_64() -> str:
    """The Hailo DFC ships for x86_64 Linux only, and the compiler image is amd64."""
    machine = platform.machine()
    if machine not in SUPPORTED_MACHINES:
        raise HostError(
            f"this machine is {machine or 'unknown'}, but hef-compile runs only on x86_64 "
            "(the Hailo Dataflow Compiler is released for x86_64 Linux, and the compiler "
            "image is linux/amd64). Run it on the x86_64 build server (GPUSrv), not on a Pi."
        )
    return machine
