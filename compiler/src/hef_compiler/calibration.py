"""Calibration windows: generated deterministically from a seed, or loaded from a .npy.

A window is (100, 9) float32: 1 s at 100 Hz of ax, ay, az, gx, gy, gz, mx, my, mz.
The generator makes IMU-like signals rather than white noise, so that the INT8 ranges
found by calibration resemble what a real sensor gives:

* accelerometer in g: gravity (1 g) seen through a tilted, possibly turning device,
  plus gait (walking 1.6-2.2 Hz, running 2.5-3.2 Hz steps with a harmonic and sway),
  sensor noise and bias;
* gyroscope in rad/s: body sway at the gait frequencies, a yaw rate when turning,
  noise and bias;
* magnetometer in gauss: the Earth's field (~0.5 G, inclined) rotated with the
  device, a hard-iron offset and noise.

Units are a choice the contract leaves open; they keep every channel O(1). Replace
the generated set with real windows (``calibration: {path: ...}``) when you have them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hef_compiler import contract
from hef_compiler.config import CalibrationSpec
from hef_compiler.errors import CalibrationError

RATE_HZ = 100.0
ACTIVITIES = ("still", "walking", "running", "turning")


def _rotation(roll: float, pitch: float, yaw: np.ndarray) -> np.ndarray:
    """World-to-body rotation matrices, one per sample: (T, 3, 3)."""
    cr, sr, cp, sp = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch)
    cy, sy = np.cos(yaw), np.sin(yaw)
    t = yaw.shape[0]
    rz = np.zeros((t, 3, 3))
    rz[:, 0, 0], rz[:, 0, 1], rz[:, 1, 0], rz[:, 1, 1], rz[:, 2, 2] = cy, -sy, sy, cy, 1.0
    ry = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])
    body_to_world = rz @ ry @ rx
    return np.transpose(body_to_world, (0, 2, 1))


def _window(rng: np.random.Generator) -> np.ndarray:
    n = contract.WINDOW
    t = np.arange(n) / RATE_HZ
    activity = ACTIVITIES[int(rng.integers(len(ACTIVITIES)))]
    roll, pitch = rng.uniform(-0.5, 0.5, size=2)
    yaw0 = rng.uniform(-np.pi, np.pi)
    yaw_rate = rng.uniform(0.5, 1.5) * rng.choice([-1.0, 1.0]) if activity == "turning" else 0.0
    yaw = yaw0 + yaw_rate * t
    to_body = _rotation(float(roll), float(pitch), yaw)

    gravity = to_body @ np.array([0.0, 0.0, 1.0])
    acc = gravity.copy()
    gyro = np.zeros((n, 3))
    gyro[:, 2] += yaw_rate
    if activity in ("walking", "running", "turning"):
        fast = activity == "running"
        step = rng.uniform(2.5, 3.2) if fast else rng.uniform(1.6, 2.2)
        amp = rng.uniform(0.5, 1.0) if fast else rng.uniform(0.15, 0.4)
        phase = rng.uniform(0, 2 * np.pi, size=3)
        acc[:, 2] += amp * np.sin(2 * np.pi * step * t + phase[0])
        acc[:, 2] += 0.3 * amp * np.sin(4 * np.pi * step * t + phase[1])
        acc[:, 0] += 0.4 * amp * np.sin(np.pi * step * t + phase[2])
        acc[:, 1] += 0.2 * amp * np.sin(2 * np.pi * step * t + phase[1])
        sway = rng.uniform(0.2, 0.8) * (2.0 if fast else 1.0)
        gyro[:, 0] += sway * np.sin(np.pi * step * t + phase[0])
        gyro[:, 1] += 0.6 * sway * np.sin(2 * np.pi * step * t + phase[2])
    acc += rng.normal(0.0, 0.02, size=(n, 3)) + rng.normal(0.0, 0.01, size=3)
    gyro += rng.normal(0.0, 0.01, size=(n, 3)) + rng.normal(0.0, 0.02, size=3)

    inclination = rng.uniform(0.9, 1.2)  # rad below horizontal, mid latitudes
    strength = rng.uniform(0.45, 0.6)
    field = strength * np.array([np.cos(inclination), 0.0, -np.sin(inclination)])
    mag = to_body @ field + rng.normal(0.0, 0.05, size=3) + rng.normal(0.0, 0.005, size=(n, 3))
    return np.concatenate([acc, gyro, mag], axis=1)


def generate_windows(count: int, seed: int) -> np.ndarray:
    """``count`` IMU-like windows (count, 100, 9) float32; same seed, same bytes."""
    if count < 1:
        raise CalibrationError(f"calibration window count must be at least 1, got {count}")
    rng = np.random.default_rng(seed)
    return np.stack([_window(rng) for _ in range(count)]).astype(np.float32)


def load_windows(path: Path) -> np.ndarray:
    """Load and check a calibration set: (N, 100, 9) float32, finite."""
    want = f"(N, {contract.WINDOW}, {contract.CHANNELS}) float32"
    if not path.is_file():
        raise CalibrationError(f"calibration file not found: {path} (expected a .npy of {want})")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise CalibrationError(f"calibration file {path} is not a readable .npy: {exc}") from exc
    return check_windows(data, str(path))


def check_windows(data: np.ndarray, origin: str) -> np.ndarray:
    want = f"(N, {contract.WINDOW}, {contract.CHANNELS}) float32"
    if data.dtype != np.float32:
        raise CalibrationError(f"calibration set {origin}: dtype {data.dtype}, expected {want}")
    if (
        data.ndim != 3
        or data.shape[1:] != (contract.WINDOW, contract.CHANNELS)
        or data.shape[0] < 1
    ):
        raise CalibrationError(f"calibration set {origin}: shape {data.shape}, expected {want}")
    if not np.isfinite(data).all():
        raise CalibrationError(f"calibration set {origin}: contains NaN or infinite values")
    return data


def calibration_windows(spec: CalibrationSpec) -> np.ndarray:
    """The calibration set the config asks for."""
    if spec.path is not None:
        return load_windows(spec.path)
    assert spec.windows is not None
    assert spec.seed is not None
    return generate_windows(spec.windows, spec.seed)


def holdout_windows(count: int, seed: int) -> np.ndarray:
    """Windows for the parity check, from their own seed stream (never the calibration's)."""
    # A distinct stream even when the user picks the same seed as calibration.
    return generate_windows(count, seed + 1_000_003)


def save_windows(windows: np.ndarray, path: Path) -> Path:
    np.save(path, windows, allow_pickle=False)
    return path
