"""``bgsdk batch``: inspect a whole folder (an archive of strips), locally or on a Ray cluster.

Same outputs as ``bgsdk run --out DIR``: per image the files written by
:func:`write_image_outputs`, and one ``results.jsonl`` row per image
(:func:`result_row`). Bad files become error rows; the job never fails for
them. The job is **restartable**: ``results.jsonl`` doubles as the journal (rows
are appended as images finish), and a rerun skips every image whose row says
it succeeded and whose output file exists; failed or missing ones are redone.
At the end ``results.jsonl`` is rewritten (atomically) in input order, one row
per input file.

On Ray (``ray_address`` given) the file list becomes a Ray Data dataset, and
``map_batches`` runs :class:`InspectWorker` in an actor pool: one ONNX Runtime
session per actor, ``cpus_per_actor``/``gpus_per_actor`` reserved for each.
Workers read the inputs and write the outputs themselves, so on a cluster the
input and output folders must be on storage every node sees (NFS, a mounted
bucket); only the small JSON rows travel back to the driver.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from .io import atomic_write, write_tiff
from .result import ErrorResult, Outcome

__all__ = [
    "BulkOptions",
    "BulkSummary",
    "InspectWorker",
    "RESULTS_NAME",
    "HEATMAP_SUFFIX",
    "output_path",
    "write_image_outputs",
    "result_row",
    "run_bulk",
]

log = logging.getLogger(__name__)

RESULTS_NAME = "results.jsonl"
HEATMAP_SUFFIX = ".heatmap.tiff"


def output_path(out_dir: Path, source: str | os.PathLike[str]) -> Path:
    """The per-image output whose presence marks an image as done."""
    return out_dir / f"{Path(source).stem}{HEATMAP_SUFFIX}"


def write_image_outputs(out_dir: Path, source: str, res: Outcome) -> None:
    """Per-image files of a successful result (those of ``bgsdk run --out``)."""
    write_tiff(output_path(out_dir, source), res.heatmap)


def result_row(source: str, res: Outcome, ms: float) -> dict[str, Any]:
    """One ``results.jsonl`` row: the file, ``ok``, the score or the error, milliseconds."""
    if isinstance(res, ErrorResult):
        return {"file": source, "ok": False, "error": str(res.error), "ms": round(ms, 3)}
    return {"file": source, "ok": True, "score": float(res.score), "ms": round(ms, 3)}


@dataclass(frozen=True)
class BulkOptions:
    """``batch_size``: images per model call; ``files_per_task``: files handed to a worker at once;
    ``actors``: Ray actor pool size; ``cpus_per_actor``/``gpus_per_actor``: resources each actor
    reserves (``gpus_per_actor > 0`` runs it on CUDA); ``threads``: ONNX Runtime threads per session."""

    batch_size: int = 1
    files_per_task: int = 16
    actors: int = 1
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    threads: int | None = None
    providers: Sequence[str] | None = None


@dataclass(frozen=True)
class BulkSummary:
    total: int
    skipped: int  # finished in an earlier run
    ok: int
    failed: int
    seconds: float
    results: Path


def _process(seg: Any, paths: Sequence[str], out_dir: Path, batch_size: int) -> list[dict[str, Any]]:
    """Run ``paths`` through ``seg``, write each success's outputs, return one row per path."""
    rows = []
    t0 = time.perf_counter()
    for source, res in zip(paths, seg.iter_batch(paths, batch_size=batch_size, on_error="return")):
        if res.ok:
            write_image_outputs(out_dir, source, res)
        t1 = time.perf_counter()
        rows.append(result_row(source, res, (t1 - t0) * 1e3))
        t0 = t1
    return rows


class InspectWorker:
    """A Ray Data ``map_batches`` callable class: one ``Segmenter`` (one ORT session) per actor."""

    def __init__(self, model: str, out_dir: str, options: BulkOptions) -> None:
        from .segmenter import Segmenter

        providers = list(options.providers or (["cuda"] if options.gpus_per_actor > 0 else ["cpu"]))
        self._seg = Segmenter(model, providers=providers, threads=options.threads)
        self._out = Path(out_dir)
        self._batch_size = options.batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = _process(self._seg, [str(p) for p in batch["path"]], self._out, self._batch_size)
        return {"row": np.array([json.dumps(r) for r in rows], dtype=object)}


def _read_rows(path: Path) -> dict[str, dict[str, Any]]:
    """Rows of an earlier (possibly interrupted) run by file; a torn last line is ignored."""
    rows: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("file"), str):
            rows[row["file"]] = row
    return rows


def _finished(paths: Sequence[str], out_dir: Path) -> dict[str, dict[str, Any]]:
    earlier = _read_rows(out_dir / RESULTS_NAME)
    return {p: earlier[p] for p in paths if p in earlier and earlier[p].get("ok")
            and output_path(out_dir, p).exists()}


def _chunks(items: Sequence[str], n: int) -> Iterator[list[str]]:
    for i in range(0, len(items), n):
        yield list(items[i : i + n])


def _local_rows(model: str, todo: Sequence[str], out_dir: Path, opt: BulkOptions) -> Iterator[list[dict[str, Any]]]:
    from .segmenter import Segmenter

    seg = Segmenter(model, providers=list(opt.providers) if opt.providers else None, threads=opt.threads)
    for chunk in _chunks(todo, opt.files_per_task):
        yield _process(seg, chunk, out_dir, opt.batch_size)


def _ray_rows(model: str, todo: Sequence[str], out_dir: Path, opt: BulkOptions) -> Iterator[list[dict[str, Any]]]:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    blocks = max(1, -(-len(todo) // opt.files_per_task))
    files = ray.data.from_items([{"path": p} for p in todo], override_num_blocks=blocks)
    ds = files.map_batches(
        InspectWorker,
        fn_constructor_kwargs={"model": model, "out_dir": str(out_dir), "options": opt},
        batch_size=opt.files_per_task,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=max(1, min(opt.actors, blocks))),
        num_cpus=opt.cpus_per_actor,
        num_gpus=opt.gpus_per_actor or None,
    )
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        yield [json.loads(r) for r in batch["row"]]


def connect_ray(address: str | None, num_cpus: int | None = None) -> bool:
    """``ray.init`` unless already connected; ``address`` None/"local" = a local instance. True if started here."""
    from .extras import require

    ray = require("ray", "ray", "bgsdk batch --ray")
    require("ray.data", "ray", "bgsdk batch --ray")
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    if address in (None, "", "local"):
        kwargs["num_cpus"] = num_cpus
    else:
        kwargs["address"] = address
    ray.init(**kwargs)
    return True


def run_bulk(
    model: str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    options: BulkOptions | None = None,
    *,
    use_ray: bool = False,
    progress: Callable[[int], None] | None = None,
) -> BulkSummary:
    """Inspect ``inputs`` into ``out_dir`` (see the module doc). Ray must be connected for ``use_ray``."""
    opt = options or BulkOptions()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [os.fspath(p) for p in inputs]
    done = _finished(paths, out)
    todo = [p for p in paths if p not in done]
    log.info("%d input(s): %d finished earlier, %d to run%s", len(paths), len(done), len(todo), " on Ray" if use_ray else "")
    journal = out / RESULTS_NAME
    _rewrite(journal, paths, done)  # drop stale rows now, so the journal only holds rows to keep
    rows = dict(done)
    t0 = time.perf_counter()
    if todo:
        source = _ray_rows if use_ray else _local_rows
        with journal.open("a", encoding="utf-8") as f:
            for chunk in source(os.fspath(model), todo, out, opt):
                for row in chunk:
                    rows[row["file"]] = row
                    f.write(json.dumps(row) + "\n")
                f.flush()
                if progress is not None:
                    progress(len(chunk))
    _rewrite(journal, paths, rows)
    failed = sum(1 for p in todo if not rows.get(p, {}).get("ok"))
    return BulkSummary(len(paths), len(done), len(todo) - failed, failed, time.perf_counter() - t0, journal)


def _rewrite(journal: Path, paths: Sequence[str], rows: dict[str, dict[str, Any]]) -> None:
    text = "".join(json.dumps(rows[p]) + "\n" for p in paths if p in rows)
    atomic_write(journal, lambda tmp: tmp.write_text(text, encoding="utf-8"))
