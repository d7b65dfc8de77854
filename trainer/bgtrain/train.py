"""The training loop: synthetic defects, focal loss with a gamma schedule, full-image validation.

One function, :func:`train`, used by the ``train-model`` CLI, ``torchrun -m bgtrain``
(DistributedDataParallel, gloo on CPU / nccl on GPU) and the tests. It reads as a
pipeline of steps over one :class:`Run` state: set up (process group, data, model,
loader) -> per epoch: train, validate, checkpoint -> summary. Reproducibility
does not hinge on RNG bookkeeping: model init is seeded, the sample order comes from
a sampler seeded by (seed, epoch), and every sample's defects are a pure function of
(seed, epoch, index). Resuming from the last checkpoint therefore replays exactly the
run that would have happened.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from bgsdk._dataset_layout import training_images
from bgsdk.errors import UserError
from bgsdk.io import atomic_write

from .checkpoint import cpu_state_dict, load_checkpoint, save_checkpoint
from .dataset import PatchDataset, resolve_geometry
from .ema import DEFAULT_EMA_DECAY, make_ema
from .loss import FocalLoss, gamma_at, top_background_loss
from .model import DEFAULT_STEM, UNet
from .precision import Precision, resolve_precision
from .recipe import AUTO_PATCHES_PER_EPOCH, DEFAULT_RECIPE, Recipe, load_recipe
from .validate import EvalSet, baseline, load_eval_set, metrics_dict, validate

__all__ = ["TrainConfig", "TrainResult", "train"]

log = logging.getLogger("bgtrain")


@dataclass
class TrainConfig:
    """Defaults are the research run's (its given numbers), except where tests/demos override."""

    training_dataset_path: str
    checkpoint_path: str = "checkpoints"
    bs: int = 16
    lr: float = 1e-3
    epochs: int = 30
    num_defects_range: tuple[int, int] | None = None  # None: the recipe's
    recipe: str = DEFAULT_RECIPE
    recipe_file: str | None = None
    stem: str = DEFAULT_STEM
    image_type: str | None = None  # None: the named type of the images' size (strip, square, mvtec) or custom
    image_size: tuple[int, int] | None = None  # None: the training images' own size (all must share it)
    img_format: str = "any"  # every image file of train/good (tiff, png, jpg: only those)
    gamma_start: float = 1.0
    gamma_end: float = 3.0
    cache_size: int = 64
    # Visits of each patch position per epoch, each with fresh defects (the step budget per epoch);
    # None = auto (resolve_repeats).
    repeats: int | None = None
    seed: int = 0
    width: int = 64
    workers: int = 0
    device: str = "auto"
    resume: str | None = None
    val_every: int = 1
    # Cap on optimiser steps per epoch (None: the whole data set). For demos and tests.
    max_steps_per_epoch: int | None = None
    threads: int | None = None
    # Decay of the weight average that is validated and saved (0: the raw weights); see ema.py.
    ema_decay: float = DEFAULT_EMA_DECAY
    # Training arithmetic (bgtrain.precision): auto = bf16 autocast on CPUs with AMX / AVX-512 BF16, else fp32.
    precision: str = "auto"
    # NHWC activations and weights in the training step (oneDNN's native layout; benchmarks/bench_train.py).
    channels_last: bool = True
    # torch.compile the training model: pays only on long runs (minutes of compilation on 2 cores).
    compile: bool = False
    # DataLoader batches prepared ahead per worker (workers > 0 only).
    prefetch_factor: int = 4


@dataclass
class TrainResult:
    best_checkpoint: Path | None
    last_checkpoint: Path
    metrics_log: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    baseline: dict[str, Any] = field(default_factory=dict)
    rank_weight_max_diff: float | None = None


def _resolve_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError("--device cuda was asked for, but no CUDA device is available")
        return torch.device("cuda", local_rank if name == "cuda" else torch.device(name).index)
    if name != "cpu":
        raise UserError(f"unknown --device {name!r}: use auto, cpu or cuda[:N]")
    return torch.device("cpu")


def _filter_format(files: list[Path], fmt: str) -> list[Path]:
    if fmt in ("any", "*", ""):
        return files
    wanted = {"tiff": {".tif", ".tiff"}, "tif": {".tif", ".tiff"}, "png": {".png"}, "jpg": {".jpg", ".jpeg"}}.get(fmt)
    if wanted is None:
        raise UserError(f"unknown --img_format {fmt!r}: use tiff, png, jpg or any")
    return [f for f in files if f.suffix.lower() in wanted]


def resolve_recipe(cfg: TrainConfig) -> Recipe:
    """The recipe a run trains with: preset, ``--recipe-file`` knobs, then explicit CLI knobs."""
    recipe = load_recipe(cfg.recipe, cfg.recipe_file)
    if cfg.num_defects_range is not None:
        recipe = Recipe.from_dict(
            {"num_defects_range": list(cfg.num_defects_range)}, base=recipe, source="--num_defects_range"
        )
    return recipe


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _flat_params(model: torch.nn.Module) -> torch.Tensor:
    """All trainable weights. (BatchNorm running statistics are per rank between
    forwards; DDP broadcasts rank 0's at every forward, and rank 0 saves them.)"""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


@dataclass
class Run:
    """Everything one training invocation holds; built by :func:`setup`, advanced by the epoch steps."""

    cfg: TrainConfig
    device: torch.device
    rank: int
    world: int
    own_group: bool
    recipe: Recipe
    dataset: PatchDataset
    sampler: DistributedSampler
    loader: DataLoader
    model: torch.nn.Module  # DDP-wrapped when distributed
    core: UNet
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.MultiStepLR
    start_epoch: int
    steps_per_epoch: int
    out_dir: Path
    ema: AveragedModel | None
    precision: Precision = field(default_factory=lambda: Precision("fp32", "fp32"))
    eval_set: EvalSet | None = None
    base_metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    best_ap: float = -1.0
    train_config: dict[str, Any] = field(default_factory=dict)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def eval_model(self) -> UNet:
        """What is validated and saved: the weight average when there is one, else the raw weights."""
        return self.ema.module if self.ema is not None else self.core  # type: ignore[return-value]

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.cfg.epochs


def _init_process(cfg: TrainConfig) -> tuple[torch.device, int, int, bool]:
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    device = _resolve_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    own_group = distributed and not dist.is_initialized()
    if own_group:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if cfg.bs < world:
        raise UserError(f"--bs {cfg.bs} is smaller than the number of processes ({world})")
    return device, rank, world, own_group


def _build_model(
    cfg: TrainConfig, device: torch.device
) -> tuple[UNet, torch.optim.Optimizer, Any, int, AveragedModel | None]:
    """Seeded model, Adam, MultiStepLR (x0.2 at 80% and 90%), weight average; restored from ``--resume``."""
    _seed_everything(cfg.seed)
    model = UNet(base_width=cfg.width, stem=cfg.stem).to(device)
    model = model.to(memory_format=_memory_format(cfg))  # type: ignore[call-overload]  # accepted, not in the stubs
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    milestones = sorted({max(1, int(round(0.8 * cfg.epochs))), max(1, int(round(0.9 * cfg.epochs)))})
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.2)
    ema = make_ema(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    if not cfg.resume:
        return model, optimizer, scheduler, 0, ema
    ckpt, info = load_checkpoint(cfg.resume, map_location=device)
    if (info.width, info.image_type, info.stem) != (cfg.width, cfg.image_type, cfg.stem):
        raise UserError(
            f"{cfg.resume}: checkpoint is width {info.width}/{info.image_type}/stem {info.stem}, "
            f"but this run asks for width {cfg.width}/{cfg.image_type}/stem {cfg.stem}"
        )
    if "optimizer_state_dict" not in ckpt:
        raise UserError(f"{cfg.resume}: has no optimizer state (only 'last' checkpoints can be resumed)")
    # With a weight average, model_state_dict is the average and the raw weights are kept beside it.
    model.load_state_dict(ckpt.get("raw_model_state_dict", ckpt["model_state_dict"]))
    optimizer.load_state_dict(ckpt["optimizer_state_dict"])
    scheduler.load_state_dict(ckpt["scheduler_state_dict"])
    if ema is not None and "raw_model_state_dict" in ckpt:
        ema.module.load_state_dict(ckpt["model_state_dict"])
        ema.n_averaged.fill_(int(ckpt.get("ema_n_averaged", 0)))
    return model, optimizer, scheduler, info.epoch + 1, ema


def _memory_format(cfg: TrainConfig) -> torch.memory_format:
    return torch.channels_last if cfg.channels_last else torch.contiguous_format


def forward_loss(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    gamma: float,
    loss_fn: FocalLoss,
    precision: Precision,
    top_weight: float = 0.0,
) -> torch.Tensor:
    """One batch's training loss: the forward pass under ``precision`` (bf16 autocast or float32), the focal loss
    (plus the top-background term) in float32 outside autocast. ``batch`` is already on the model's device. The
    input stays NCHW: a channels-last model converts the stem's maps for its convolutions (``UNet.forward``)."""
    with precision.autocast():
        logits = model(batch["input"])
    logits = logits.float()  # bf16 under autocast: the softmax and the loss in float32
    loss = loss_fn(logits, batch["mask"], gamma, batch["weight"])
    if top_weight > 0:
        loss = loss + top_weight * top_background_loss(logits, batch["mask"], batch["hard"])
    return loss


def provenance(data_root: str | Path) -> dict[str, Any]:
    """Where a model came from, for its metadata: the source commit (``git describe``-like, ``+dirty`` with local
    changes; None outside a checkout) and the data set's recipe record (``dataset.json`` of ``bgsdk synth``:
    its seed and levels), so a shipped model names the command inputs that rebuild it."""
    out: dict[str, Any] = {"source_commit": source_commit()}
    record = Path(data_root) / "dataset.json"
    try:
        info = json.loads(record.read_text())
    except (OSError, ValueError):
        return out
    if isinstance(info, dict):
        out["data"] = {k: info[k] for k in ("seed", "eval_level", "counts", "image_size") if k in info}
    return out


def source_commit() -> str | None:
    import subprocess

    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def resolve_repeats(repeats: int | None, patches_per_pass: int) -> int:
    """Passes over the patch positions per epoch: as given, or (auto) enough for AUTO_PATCHES_PER_EPOCH."""
    if repeats is not None:
        if repeats < 1:
            raise UserError(f"--repeats must be >= 1 or auto, got {repeats}")
        return int(repeats)
    return max(1, math.ceil(AUTO_PATCHES_PER_EPOCH / patches_per_pass))


def setup(cfg: TrainConfig, echo: Callable[[str], None] = print) -> Run:
    """Process group, data (recipe), model (resumed if asked), loader and the validation set."""
    device, rank, world, own_group = _init_process(cfg)
    files = _filter_format(training_images(cfg.training_dataset_path), cfg.img_format)
    if not files:
        raise UserError(f"{cfg.training_dataset_path}: no training images of format {cfg.img_format!r}")
    recipe = resolve_recipe(cfg)
    image_type, image_size = resolve_geometry(files, cfg.image_type, cfg.image_size)
    cfg = replace(cfg, image_type=image_type, image_size=image_size)  # checkpoints record the resolved geometry
    dataset = PatchDataset(files, image_type, cfg.cache_size, recipe, cfg.seed, image_size=image_size)
    dataset.repeats = resolve_repeats(cfg.repeats, len(dataset))
    cfg = replace(cfg, repeats=dataset.repeats)  # summary.json and checkpoints record the number used
    precision = resolve_precision(cfg.precision, device)
    core, optimizer, scheduler, start_epoch, ema = _build_model(cfg, device)
    model: torch.nn.Module = core
    if world > 1:
        model = DistributedDataParallel(core, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        model = torch.compile(model)  # type: ignore[assignment]  # shares core's parameters
    sampler: DistributedSampler[int] = DistributedSampler(
        dataset, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed, drop_last=True
    )
    loader = DataLoader(
        dataset,
        batch_size=cfg.bs // world,
        sampler=sampler,
        num_workers=cfg.workers,
        drop_last=True,
        pin_memory=device.type == "cuda",
        # workers keep their image cache between epochs and prepare batches while the step runs
        persistent_workers=cfg.workers > 0,
        prefetch_factor=cfg.prefetch_factor if cfg.workers > 0 else None,
    )
    steps = min(len(loader), cfg.max_steps_per_epoch or len(loader))
    if steps == 0:
        raise UserError(f"not enough patches ({len(dataset)}) for one batch of {cfg.bs}")
    run = Run(
        cfg,
        device,
        rank,
        world,
        own_group,
        recipe,
        dataset,
        sampler,
        loader,
        model,
        core,
        optimizer,
        scheduler,
        start_epoch,
        steps,
        Path(cfg.checkpoint_path),
        ema,
        precision,
    )
    if run.main:
        echo(
            f"precision: {precision.reason}; memory format: {'channels-last' if cfg.channels_last else 'NCHW'}"
            + ("; torch.compile" if cfg.compile else "")
        )
        echo(
            f"training data: {len(files)} images x {len(dataset.patches)} patches x {dataset.repeats} pass(es) = "
            f"{len(dataset)} patches per epoch, {steps} steps of batch {cfg.bs}"
        )
        _setup_outputs(run, echo)
    return run


def _setup_outputs(run: Run, echo: Callable[[str], None]) -> None:
    """Output folder, resumed history, the validation set and its double-detection numbers."""
    cfg = run.cfg
    run.out_dir.mkdir(parents=True, exist_ok=True)
    log_path = run.out_dir / "metrics.jsonl"
    if cfg.resume and log_path.exists():
        history = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
        run.history = [h for h in history if h["epoch"] < run.start_epoch]
    run.best_ap = max((h.get("pixel_ap") or -1.0 for h in run.history), default=-1.0)
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}
    run.train_config = {k: v for k, v in config.items() if v is not None}
    run.train_config["recipe"] = run.recipe.to_dict()
    run.train_config.update(provenance(cfg.training_dataset_path))
    tiling = run.dataset.tiling
    run.eval_set = load_eval_set(cfg.training_dataset_path, image_size=(tiling.height, tiling.width))
    if run.eval_set is None:
        log.warning(
            "no valid/ or test/ images under %s: no validation, best.pt = last epoch", cfg.training_dataset_path
        )
        return
    run.base_metrics = metrics_dict(baseline(run.eval_set), "baseline_")
    echo(
        f"validation on {run.eval_set.split}/ ({len(run.eval_set)} images); recipe {run.recipe.name}; "
        f"double-detection baseline: " + _fmt(run.base_metrics, "baseline_")
    )


def train_epoch(run: Run, epoch: int, progress: bool) -> dict[str, Any]:
    """One pass over the sampler's order; returns the epoch's loss/gamma/lr/timing record."""
    from tqdm import tqdm

    run.dataset.set_epoch(epoch)
    run.sampler.set_epoch(epoch)
    run.model.train()
    # A bar only when someone watches a terminal; a log file gets one plain line per epoch.
    bar = tqdm(
        total=run.steps_per_epoch,
        desc=f"epoch {epoch + 1}/{run.cfg.epochs}",
        leave=False,
        disable=not (progress and run.main and sys.stderr.isatty()),
    )
    loss_sum = torch.zeros((), device=run.device)
    t_data = t_compute = 0.0
    gamma = run.cfg.gamma_start
    loss_fn = FocalLoss(alpha=0.75, smoothing=1e-5)
    top_weight = run.dataset.recipe.top_background_weight
    t0 = time.perf_counter()
    for step, batch in enumerate(run.loader):
        if step >= run.steps_per_epoch:
            break
        t1 = time.perf_counter()
        t_data += t1 - t0
        batch = {k: v.to(run.device, non_blocking=True) for k, v in batch.items() if isinstance(v, torch.Tensor)}
        gamma = gamma_at(epoch * run.steps_per_epoch + step, run.total_steps, run.cfg.gamma_start, run.cfg.gamma_end)
        loss = forward_loss(run.model, batch, gamma, loss_fn, run.precision, top_weight)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        if run.ema is not None:
            run.ema.update_parameters(run.core)
        loss_sum += loss.detach()
        t0 = time.perf_counter()
        t_compute += t0 - t1
        if not bar.disable:  # loss.item() syncs the device: only when someone watches the bar
            bar.set_postfix(loss=f"{loss.item():.4f}", gamma=f"{gamma:.2f}")
            bar.update()
    bar.close()
    run.scheduler.step()
    if run.distributed:
        dist.all_reduce(loss_sum)
        loss_sum /= run.world
    return {
        "epoch": epoch,
        "loss": float(loss_sum) / run.steps_per_epoch,
        "gamma": gamma,
        "lr": run.optimizer.param_groups[0]["lr"],
        "steps": run.steps_per_epoch,
        "data_s": round(t_data, 3),
        "compute_s": round(t_compute, 3),
    }


def validate_epoch(run: Run, record: dict[str, Any], last: bool) -> None:
    """Full-image validation (tiled like the deployed graph) every ``val_every`` epochs and after the last."""
    if run.eval_set is not None and ((record["epoch"] + 1) % run.cfg.val_every == 0 or last):
        record.update(metrics_dict(validate(run.eval_model, run.eval_set, run.dataset.tiling, run.device)))


def save_epoch(run: Run, record: dict[str, Any], last: bool) -> None:
    """metrics.jsonl, last.pt (resumable) and best.pt (by validation pixel AP), all atomic."""
    run.history.append(record)
    text = "".join(json.dumps(h) + "\n" for h in run.history)
    atomic_write(run.out_dir / "metrics.jsonl", lambda p: p.write_text(text))
    metrics = {k: v for k, v in {**record, **run.base_metrics}.items() if v is not None}
    tiling = run.dataset.tiling
    common = dict(
        image_type=run.cfg.image_type,
        image_size=(tiling.height, tiling.width),
        epoch=record["epoch"],
        seed=run.cfg.seed,
        metrics=metrics,
        train_config=run.train_config,
    )
    # What the weights were trained in ("fp32", "bf16"): a plain string, so weights_only loading still works.
    trained = {"training_precision": run.precision.name}
    extra: dict[str, Any] = {
        **trained,
        "optimizer_state_dict": run.optimizer.state_dict(),
        "scheduler_state_dict": run.scheduler.state_dict(),
    }
    if run.ema is not None:
        extra["raw_model_state_dict"] = cpu_state_dict(run.core)
        extra["ema_n_averaged"] = int(run.ema.n_averaged)
    save_checkpoint(run.out_dir / "last.pt", run.eval_model, extra=extra, **common)
    ap = record.get("pixel_ap")
    if (ap is not None and ap > run.best_ap) or (run.eval_set is None and last):
        run.best_ap = ap if ap is not None else run.best_ap
        save_checkpoint(run.out_dir / "best.pt", run.eval_model, extra=trained, **common)


def train(
    cfg: TrainConfig,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    stop_after: int | None = None,
) -> TrainResult:
    """Train; on rank 0 write ``best.pt``, ``last.pt``, ``metrics.jsonl`` and ``summary.json``.

    ``stop_after`` ends this invocation after that many epochs (the schedule still
    spans ``cfg.epochs``); ``--resume last.pt`` continues it exactly.
    """
    run = setup(cfg, echo)
    t_start = time.perf_counter()
    end_epoch = cfg.epochs if stop_after is None else min(cfg.epochs, run.start_epoch + stop_after)
    for epoch in range(run.start_epoch, end_epoch):
        record = train_epoch(run, epoch, progress)
        last = epoch == end_epoch - 1
        if run.main:
            validate_epoch(run, record, last)
            save_epoch(run, record, last)
            echo(f"epoch {epoch + 1}/{cfg.epochs}: " + _fmt(record))
        if run.distributed:
            dist.barrier()
    return finish(run, end_epoch, time.perf_counter() - t_start, echo)


def finish(run: Run, end_epoch: int, seconds: float, echo: Callable[[str], None]) -> TrainResult:
    """Check the ranks agree, write ``summary.json``, tear down the process group."""
    rank_diff = None
    if run.distributed:
        flat = _flat_params(run.core)
        gathered = [torch.empty_like(flat) for _ in range(run.world)]
        dist.all_gather(gathered, flat)
        rank_diff = max(float((g - gathered[0]).abs().max()) for g in gathered)
    best = run.out_dir / "best.pt"
    result = TrainResult(
        best if best.exists() else None,
        run.out_dir / "last.pt",
        run.out_dir / "metrics.jsonl",
        run.history,
        run.base_metrics,
        rank_diff,
    )
    if run.main:
        final = run.history[-1] if run.history else {}
        summary = {
            "event": "summary",
            "epochs": run.cfg.epochs,
            "world_size": run.world,
            "seconds": round(seconds, 1),
            "best_pixel_ap": run.best_ap if run.best_ap >= 0 else None,
            **{k: v for k, v in final.items() if k not in ("epoch", "loss", "gamma", "lr", "steps")},
            **run.base_metrics,
            "rank_weight_max_diff": rank_diff,
            "recipe": run.recipe.to_dict(),
            "stem": run.cfg.stem,
            "precision": run.precision.reason,
            "repeats": run.dataset.repeats,
        }
        atomic_write(run.out_dir / "summary.json", lambda p: p.write_text(json.dumps(summary, indent=2)))
        echo(
            f"done: {end_epoch - run.start_epoch} epoch(s) in {summary['seconds']}s on {run.world} process(es); "
            f"model {_fmt(final)}"
            + (f" | baseline {_fmt(run.base_metrics, 'baseline_')}" if run.base_metrics else "")
            + f" | checkpoints in {run.out_dir}"
        )
    if run.distributed:
        dist.barrier()
        if run.own_group:
            dist.destroy_process_group()
    return result


def _fmt(d: dict[str, Any], prefix: str = "") -> str:
    keys = [
        "loss",
        "gamma",
        "image_auroc",
        "pixel_auroc",
        "pixel_ap",
        "recall_weak",
        "recall_weak12",
        "recall_missing",
        "fa_one_ref",
        "whole_pixel_ap",
    ]
    parts = []
    for k in keys:
        v = d.get(prefix + k)
        if isinstance(v, float) and math.isfinite(v):
            parts.append(f"{k}={v:.4f}")
    return " ".join(parts) if parts else "(no metrics)"
