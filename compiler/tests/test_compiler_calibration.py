"""Calibration windows: deterministic, the right shape, IMU-like; loaded files checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hef_compiler.calibration import generate_windows, holdout_windows, load_windows
from hef_compiler.errors import CalibrationError


def test_same_seed_same_bytes_and_shape() -> None:
    a = generate_windows(32, 20261123)
    b = generate_windows(32, 20261123)
    assert a.shape == (32, 100, 9)
    assert a.dtype == np.float32
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, generate_windows(32, 1))


def test_holdout_is_not_the_calibration_stream() -> None:
    assert not np.array_equal(holdout_windows(8, 5), generate_windows(8, 5))


def test_windows_look_like_an_imu() -> None:
    w = generate_windows(200, 3).astype(np.float64)
    acc, gyro, mag = w[..., 0:3], w[..., 3:6], w[..., 6:9]
    # Gravity: the accelerometer's mean vector per window has a norm near 1 g.
    g = np.linalg.norm(acc.mean(axis=1), axis=-1)
    assert 0.8 < np.median(g) < 1.2
    # The Earth's field: 0.45-0.6 gauss, nearly constant within a window.
    m = np.linalg.norm(mag, axis=-1)
    assert 0.35 < m.mean() < 0.7
    # Some windows are still (little gyro energy), some move (a lot).
    energy = gyro.std(axis=1).sum(axis=-1)
    assert energy.min() < 0.1 < energy.max()
    # Not white noise: neighbouring accelerometer samples are strongly correlated.
    x = acc[..., 2] - acc[..., 2].mean(axis=1, keepdims=True)
    lag1 = (x[:, 1:] * x[:, :-1]).sum() / (x * x).sum()
    assert lag1 > 0.5


def test_load_checks_file_shape_dtype_and_values(tmp_path: Path) -> None:
    good = tmp_path / "good.npy"
    np.save(good, generate_windows(10, 1))
    assert load_windows(good).shape == (10, 100, 9)
    with pytest.raises(CalibrationError, match=r"not found: .*missing\.npy"):
        load_windows(tmp_path / "missing.npy")
    wrong_dtype = tmp_path / "f64.npy"
    np.save(wrong_dtype, generate_windows(4, 1).astype(np.float64))
    with pytest.raises(CalibrationError, match="dtype float64"):
        load_windows(wrong_dtype)
    wrong_shape = tmp_path / "shape.npy"
    np.save(wrong_shape, np.zeros((4, 50, 9), np.float32))
    with pytest.raises(CalibrationError, match=r"shape \(4, 50, 9\), expected \(N, 100, 9\)"):
        load_windows(wrong_shape)
    nan = tmp_path / "nan.npy"
    arr = generate_windows(4, 1)
    arr[0, 0, 0] = np.nan
    np.save(nan, arr)
    with pytest.raises(CalibrationError, match="NaN"):
        load_windows(nan)
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"not numpy")
    with pytest.raises(CalibrationError, match=r"not a readable \.npy"):
        load_windows(junk)
