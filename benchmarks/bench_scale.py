"""Strips/s: local Segmenter vs Triton (PyTriton server) vs Ray Data, same model, same strips, one run.

    python benchmarks/bench_scale.py [MODEL.onnx] [--images 16] [--width 16] [--threads 1] [--clients 4]

* local: ``Segmenter.run`` one strip after another (``--threads`` ONNX Runtime threads).
* Triton: a real Triton server (``python -m bgsdk.serving.pytriton_serve`` from ``.venv-pytriton``, ONNX Runtime
  inside, ``--threads`` per instance) with 1 and 2 model instances, with and without dynamic batching;
  ``TritonSegmenter`` clients over HTTP sending 1 or 8 strips per request, from 1 or ``--clients``
  concurrent client threads (each thread its own strips). The server's statistics give the mean number of
  strips per model execution (what the dynamic batcher made of it).
* Ray: ``run_bulk(..., use_ray=True)`` on a local Ray with 1 and 2 actors (1 CPU and ``--threads``
  threads each); the time includes starting the actors, not ``ray.init``.

Without MODEL a width-``--width`` UNet with random weights is built with build-model (speed does not
depend on the weights). Every configuration runs the same ``--images`` strips once after a warm-up.
On a shared machine, run it when the machine is otherwise idle; the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import tifffile
from _common import random_strip_checkpoint

from bgsdk import Segmenter
from bgsdk._bench import random_image


def build_standin(tmp: Path, width: int) -> Path:
    from bgbuild import BuildOptions, build_model

    ckpt = random_strip_checkpoint(tmp / "w.pt", width)
    build_model(ckpt, tmp / "model.onnx", BuildOptions(verify_images=1))
    return tmp / "model.onnx"


def write_strips(folder: Path, n: int, hw: tuple[int, int]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"s{i:04d}.tiff"
        tifffile.imwrite(p, random_image(*hw, seed=i))
        paths.append(p)
    return paths


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("nan")


def bench_local(model: Path, paths: list[Path], threads: int) -> float:
    seg = Segmenter(model, threads=threads)
    seg.run(paths[0])
    t0 = time.perf_counter()
    for p in paths:
        seg.run(p)
    return rate(len(paths), time.perf_counter() - t0)


def run_clients(seg: Any, paths: list[Path], clients: int, batch: int) -> float:
    """``clients`` threads share the strips (round robin), each sends ``batch`` strips per request."""
    shares = [paths[i::clients] for i in range(clients)]
    barrier = threading.Barrier(clients)
    errors: list[BaseException] = []

    def work(mine: list[Path]) -> None:
        barrier.wait()
        try:
            for r in seg.iter_batch(mine, batch_size=batch, on_error="raise"):
                assert r.ok
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in shares]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return rate(len(paths), time.perf_counter() - t0)


def bench_triton(model: Path, paths: list[Path], threads: int, clients: int, emit: Callable[..., None]) -> None:
    import tritonclient.http as th

    from bgsdk.serving.pytriton_serve import launch
    from bgsdk.serving.triton_client import TritonSegmenter

    for instances in (1, 2):
        for dynamic in (True, False):
            with launch(
                model,
                "bgsdk",
                instances=instances,
                max_batch_size=8,
                queue_delay_us=2000 if dynamic else None,
                threads=threads,
            ) as srv:
                seg = TritonSegmenter(srv.http_url, srv.name)
                stats = th.InferenceServerClient(srv.http_url.split("://")[1])
                seg.run(paths[0])
                for batch in (1, 8):
                    for n_clients in (1, clients):
                        before = stats.get_inference_statistics(srv.name)["model_stats"][0]
                        r = run_clients(seg, paths, n_clients, batch)
                        after = stats.get_inference_statistics(srv.name)["model_stats"][0]
                        execs = after["execution_count"] - before["execution_count"]
                        per_exec = (after["inference_count"] - before["inference_count"]) / max(execs, 1)
                        emit(
                            f"triton {instances} inst, dyn {'on ' if dynamic else 'off'}, batch {batch}, "
                            f"{n_clients} client(s)",
                            r,
                            f"{per_exec:.1f} strips/execution",
                        )


def bench_ray(model: Path, paths: list[Path], threads: int, out: Path, emit: Callable[..., None]) -> None:
    import ray

    from bgsdk.serving.bulk import BulkOptions, run_bulk

    ray.init(num_cpus=max(2, os.cpu_count() or 2), include_dashboard=False, log_to_driver=False)
    try:
        for actors in (1, 2):
            opts = BulkOptions(actors=actors, cpus_per_actor=1, threads=threads, files_per_task=4)
            s = run_bulk(model, paths, out / f"ray{actors}", opts, use_ray=True)
            assert s.failed == 0
            emit(f"ray {actors} actor(s)", rate(s.ok, s.seconds), "incl. actor start-up")
    finally:
        ray.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", type=Path)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--width", type=int, default=16, help="stand-in UNet width when no MODEL is given")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per session/instance/actor")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--skip", nargs="*", default=[], choices=["triton", "ray"])
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        model = a.model or build_standin(tmp, a.width)
        seg = Segmenter(model)
        paths = write_strips(tmp / "strips", a.images, seg.image_size)
        print(
            f"model {model if a.model else f'random UNet width {a.width}'}; {a.images} strips; "
            f"{a.threads} ORT thread(s) per worker; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}"
        )
        base = bench_local(model, paths, a.threads)
        rows: list[tuple[str, float, str]] = [("local Segmenter (1 process)", base, "")]

        def emit(name: str, r: float, note: str = "") -> None:
            rows.append((name, r, note))
            print(f"  {name:<48} {r:7.2f} strips/s  x{r / base:4.2f}  {note}", flush=True)

        print(f"  {rows[0][0]:<48} {base:7.2f} strips/s  x1.00", flush=True)
        if "triton" not in a.skip:
            bench_triton(model, paths, a.threads, a.clients, emit)
        if "ray" not in a.skip:
            bench_ray(model, paths, a.threads, tmp, emit)
        print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
