"""Fixtures for the fleet scenario's tests (helpers are in fleet.py)."""

import pytest
from fleet import gpusrv_host


@pytest.fixture(scope="module")
def gpusrv():
    """The GPUSrv stand-in, which is also the registry host."""
    return gpusrv_host()
