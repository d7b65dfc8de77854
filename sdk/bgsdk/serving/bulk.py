"""``bgsdk batch``: inspect a whole folder (an archive of strips), locally or on a Ray cluster.

Same outputs as ``bgsdk run --out DIR`` (:mod:`bgsdk._run_outputs`, the same
functions): per image the heatmap TIFF and the mask/overlay PNGs, per run
``results.jsonl`` (one row per image) and ``defects.csv``. Bad files become
error rows; the job never fails for them. The job is **restartable**: every
finished image is appended to a journal (``.bgsdk-batch.jsonl`` in the output
folder) as soon as it is written, and a rerun skips every image whose journal
entry says it succeeded and whose heatmap exists; failed or missing ones are
redone. At the end ``results.jsonl`` and ``defects.csv`` are written
(atomically) from the journal, in input order, one row per input file.

On Ray (``use_ray``) the file list becomes a Ray Data dataset, and
``map_batches`` runs :class:`InspectWorker` in an actor pool: one ONNX Runtime
session per actor, ``cpus_per_actor``/``gpus_per_actor`` reserved for each.
Workers read the inputs and write the per-image files themselves, so on a
cluster the input and output folders must be on storage every node sees (NFS, a
mounted bucket); only the small JSON rows travel back to the driver.
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

from .._run_outputs import HEATMAP_SUFFIX, RESULTS_JSONL, RunWriter, defect_rows, result_row, write_image_files
from ..io import atomic_write, read_image

__all__ = ["BulkOptions", "BulkSummary", "InspectWorker", "JOURNAL_NAME", "output_path", "run_bulk", "connect_ray"]

log = logging.getLogger(__name__)

JOURNAL_NAME = ".bgsdk-batch.jsonl"

#: One image's journal entry: its ``results.jsonl`` row and its ``defects.csv`` rows.
Entry = dict[str, Any]


def output_path(out_dir: Path, source: str | os.PathLike[str]) -> Path:
    """The per-image output whose presence marks an image as done."""
    return out_dir / f"{Path(source).stem}{HEATMAP_SUFFIX}"


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
    fallback: bool = False  # a provider that is missing or fails to start: CPU instead (bgsdk batch --device auto)
    png: bool = True
    threshold: float | None = None  # None: the model's operating point (as bgsdk run)
    min_area: int | None = None


@dataclass(frozen=True)
class BulkSummary:
    total: int
    skipped: int  # finished in an earlier run
    ok: int
    failed: int
    seconds: float
    results: Path


def _process(seg: Any, paths: Sequence[str], out_dir: Path, opt: BulkOptions) -> list[Entry]:
    """Run ``paths`` through ``seg``, write each success's files, return one journal entry per path."""
    entries = []
    t0 = time.perf_counter()
    outcomes = seg.iter_batch(
        paths, batch_size=opt.batch_size, on_error="return", threshold=opt.threshold, min_area=opt.min_area
    )
    for source, res in zip(paths, outcomes):
        path = Path(source)
        write_image_files(out_dir, path, res, opt.png, read_image(path) if opt.png and res.ok else None)
        t1 = time.perf_counter()
        entries.append({"row": result_row(path, res, (t1 - t0) * 1e3), "defects": defect_rows(path, res)})
        t0 = t1
    return entries


class InspectWorker:
    """A Ray Data ``map_batches`` callable class: one ``Segmenter`` (one ORT session) per actor."""

    def __init__(self, model: str, out_dir: str, options: BulkOptions) -> None:
        from .._segmenter import Segmenter

        providers = list(options.providers or (["cuda"] if options.gpus_per_actor > 0 else ["cpu"]))
        self._seg = Segmenter(model, providers=providers, threads=options.threads, fallback=options.fallback)
        self._out = Path(out_dir)
        self._opt = options

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        entries = _process(self._seg, [str(p) for p in batch["path"]], self._out, self._opt)
        return {"entry": np.array([json.dumps(e) for e in entries], dtype=object)}


def _read_journal(path: Path) -> dict[str, Entry]:
    """Entries of an earlier (possibly interrupted) run by file; a torn last line is ignored."""
    entries: dict[str, Entry] = {}
    if not path.exists():
        return entries
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if isinstance(e, dict) and isinstance(e.get("row"), dict) and isinstance(e["row"].get("file"), str):
            entries[e["row"]["file"]] = e
    return entries


def _finished(paths: Sequence[str], out_dir: Path) -> dict[str, Entry]:
    earlier = _read_journal(out_dir / JOURNAL_NAME)
    return {
        p: earlier[p]
        for p in paths
        if p in earlier and earlier[p]["row"].get("ok") and output_path(out_dir, p).exists()
    }


def _chunks(items: Sequence[str], n: int) -> Iterator[list[str]]:
    for i in range(0, len(items), n):
        yield list(items[i : i + n])


def _local_entries(model: str, todo: Sequence[str], out_dir: Path, opt: BulkOptions) -> Iterator[list[Entry]]:
    from .._segmenter import Segmenter

    providers = list(opt.providers) if opt.providers else None
    seg = Segmenter(model, providers=providers, threads=opt.threads, fallback=opt.fallback)
    for chunk in _chunks(todo, opt.files_per_task):
        yield _process(seg, chunk, out_dir, opt)


def _ray_entries(model: str, todo: Sequence[str], out_dir: Path, opt: BulkOptions) -> Iterator[list[Entry]]:
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
        yield [json.loads(e) for e in batch["entry"]]


def connect_ray(address: str | None, num_cpus: int | None = None) -> bool:
    """``ray.init`` unless already connected; ``address`` None/"local" = a local instance. True if started here."""
    from .._extras import require

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
    log.info(
        "%d input(s): %d finished earlier, %d to run%s", len(paths), len(done), len(todo), " on Ray" if use_ray else ""
    )
    journal = out / JOURNAL_NAME
    entries = dict(done)
    _rewrite_journal(journal, paths, entries)  # only entries worth keeping; the rest is redone
    t0 = time.perf_counter()
    if todo:
        source = _ray_entries if use_ray else _local_entries
        with journal.open("a", encoding="utf-8") as f:
            for chunk in source(os.fspath(model), todo, out, opt):
                for e in chunk:
                    entries[e["row"]["file"]] = e
                    f.write(json.dumps(e) + "\n")
                f.flush()
                if progress is not None:
                    progress(len(chunk))
    with RunWriter(out, opt.png) as writer:  # results.jsonl + defects.csv, renamed into place on close
        for p in paths:
            if p in entries:
                writer.add_rows(entries[p]["row"], entries[p]["defects"])
    failed = sum(1 for p in todo if not entries.get(p, {}).get("row", {}).get("ok"))
    return BulkSummary(len(paths), len(done), len(todo) - failed, failed, time.perf_counter() - t0, out / RESULTS_JSONL)


def _rewrite_journal(journal: Path, paths: Sequence[str], entries: dict[str, Entry]) -> None:
    text = "".join(json.dumps(entries[p]) + "\n" for p in paths if p in entries)
    atomic_write(journal, lambda tmp: tmp.write_text(text, encoding="utf-8"))
