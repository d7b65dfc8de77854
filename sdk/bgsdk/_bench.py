"""Latency and throughput of a :class:`~bgsdk._segmenter.Segmenter` (``bgsdk bench``).

One timed call = one model call on ``batch_size`` images through the public API
(``run_batch``), so the numbers include the SDK's preprocessing -- what an
integrator gets. Median of repeats, because a shared machine has outliers.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np

from ._segmenter import Segmenter

__all__ = ["BenchResult", "benchmark", "random_image"]


@dataclass(frozen=True)
class BenchResult:
    batch_size: int
    latencies_s: tuple[float, ...]
    providers: tuple[str, ...]
    threads: int | None

    @property
    def median_s(self) -> float:
        return statistics.median(self.latencies_s)

    @property
    def per_image_s(self) -> float:
        return self.median_s / self.batch_size

    @property
    def throughput(self) -> float:
        """Images per second at the median latency."""
        return self.batch_size / self.median_s


def random_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A ``(3,H,W)`` float32 stand-in strip, uniform 0..255 (the pixels do not change the cost)."""
    return np.random.default_rng(seed).uniform(0.0, 255.0, size=(3, height, width)).astype(np.float32)


def benchmark(
    seg: Segmenter,
    batch_size: int = 1,
    repeat: int = 20,
    warmup: int = 2,
    image: np.ndarray | None = None,
) -> BenchResult:
    if repeat < 1 or warmup < 0 or batch_size < 1:
        raise ValueError("repeat and batch_size must be >= 1, warmup >= 0")
    img = random_image(*seg.image_size) if image is None else image
    items = [img] * batch_size
    for _ in range(warmup):
        seg.run_batch(items, batch_size=batch_size, on_error="raise")
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        seg.run_batch(items, batch_size=batch_size, on_error="raise")
        times.append(time.perf_counter() - t0)
    return BenchResult(batch_size, tuple(times), tuple(seg.providers), seg.threads)
