"""The training loop: synthetic defects, focal loss with a gamma schedule, full-image validation.

One function, :func:`train`, used by the ``train-model`` CLI, ``torchrun -m bgtrain``
(DistributedDataParallel, gloo on CPU / nccl on GPU) and the tests. Reproducibility
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
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from bgsdk.clikit import UserError
from bgsdk.io import atomic_write

from .checkpoint import load_checkpoint, save_checkpoint
from .dataset import PatchDataset
from .layout import training_images
from .loss import FocalLoss, gamma_at
from .model import UNet
from .recipe import DEFAULT_RECIPE, Recipe, load_recipe
from .validate import baseline, load_eval_set, metrics_dict, validate

__all__ = ["TrainConfig", "TrainResult", "train"]

log = logging.getLogger("bgtrain")


@dataclass
class TrainConfig:
    """Defaults are the research run's (SPEC section 2), except where tests/demos override."""

    training_dataset_path: str
    checkpoint_path: str = "checkpoints"
    bs: int = 16
    lr: float = 1e-3
    epochs: int = 30
    num_defects_range: tuple[int, int] | None = None  # None: the recipe's
    recipe: str = DEFAULT_RECIPE
    recipe_file: str | None = None
    stem: str = "compare"
    image_type: str = "strip"
    img_format: str = "tiff"
    gamma_start: float = 1.0
    gamma_end: float = 3.0
    cache_size: int = 64
    seed: int = 0
    width: int = 64
    workers: int = 0
    device: str = "auto"
    resume: str | None = None
    val_every: int = 1
    # Cap on optimiser steps per epoch (None: the whole data set). For demos and tests.
    max_steps_per_epoch: int | None = None
    threads: int | None = None


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
        recipe = Recipe.from_dict({"num_defects_range": list(cfg.num_defects_range)}, base=recipe, source="--num_defects_range")
    return recipe


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _flat_params(model: torch.nn.Module) -> torch.Tensor:
    """All trainable weights. (BatchNorm running statistics are per rank between
    forwards; DDP broadcasts rank 0's at every forward, and rank 0 saves them.)"""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def train(
    cfg: TrainConfig,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    stop_after: int | None = None,
) -> TrainResult:
    """Train; on rank 0 write ``best.pt``, ``last.pt`` and ``metrics.jsonl`` under ``checkpoint_path``.

    ``stop_after`` ends this invocation after that many epochs (the schedule still
    spans ``cfg.epochs``); ``--resume last.pt`` continues it exactly.
    """
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _resolve_device(cfg.device, local_rank)
    own_group = distributed and not dist.is_initialized()
    if own_group:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    main = rank == 0
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if device.type == "cuda":
        torch.cuda.set_device(device)

    if cfg.bs < world:
        raise UserError(f"--bs {cfg.bs} is smaller than the number of processes ({world})")
    files = _filter_format(training_images(cfg.training_dataset_path), cfg.img_format)
    if not files:
        raise UserError(f"{cfg.training_dataset_path}: no training images of format {cfg.img_format!r}")
    recipe = resolve_recipe(cfg)
    dataset = PatchDataset(files, cfg.image_type, cfg.cache_size, recipe, cfg.seed)
    tiling = dataset.tiling
    image_size = (tiling.height, tiling.width)

    _seed_everything(cfg.seed)
    model = UNet(base_width=cfg.width, stem=cfg.stem).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    milestones = sorted({max(1, int(round(0.8 * cfg.epochs))), max(1, int(round(0.9 * cfg.epochs)))})
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.2)
    start_epoch = 0
    if cfg.resume:
        ckpt, info = load_checkpoint(cfg.resume, map_location=device)
        if (info.width, info.image_type, info.stem) != (cfg.width, cfg.image_type, cfg.stem):
            raise UserError(
                f"{cfg.resume}: checkpoint is width {info.width}/{info.image_type}/stem {info.stem}, "
                f"but this run asks for width {cfg.width}/{cfg.image_type}/stem {cfg.stem}"
            )
        if "optimizer_state_dict" not in ckpt:
            raise UserError(f"{cfg.resume}: has no optimizer state (only 'last' checkpoints can be resumed)")
        model.load_state_dict(ckpt["model_state_dict"])
        optimizer.load_state_dict(ckpt["optimizer_state_dict"])
        scheduler.load_state_dict(ckpt["scheduler_state_dict"])
        start_epoch = info.epoch + 1
    if distributed:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    core = model.module if distributed else model

    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed, drop_last=True)
    per_rank_bs = cfg.bs // world
    loader = DataLoader(
        dataset,
        batch_size=per_rank_bs,
        sampler=sampler,
        num_workers=cfg.workers,
        drop_last=True,
        pin_memory=device.type == "cuda",
    )
    steps_per_epoch = len(loader)
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    if steps_per_epoch == 0:
        raise UserError(f"not enough patches ({len(dataset)}) for one batch of {cfg.bs}")
    total_steps = steps_per_epoch * cfg.epochs
    loss_fn = FocalLoss(alpha=0.75, smoothing=1e-5)

    out_dir = Path(cfg.checkpoint_path)
    best_path, last_path, log_path = out_dir / "best.pt", out_dir / "last.pt", out_dir / "metrics.jsonl"
    eval_set = load_eval_set(cfg.training_dataset_path) if main else None
    base_metrics: dict[str, Any] = {}
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        if eval_set is None:
            log.warning("no valid/ or test/ images under %s: no validation, best.pt = last epoch", cfg.training_dataset_path)
        else:
            base_metrics = metrics_dict(baseline(eval_set), "baseline_")
            echo(
                f"validation on {eval_set.split}/ ({len(eval_set)} images); double-detection baseline: "
                + _fmt(base_metrics, "baseline_")
            )
    history: list[dict[str, Any]] = []
    if cfg.resume and main and log_path.exists():
        history = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
        history = [h for h in history if h["epoch"] < start_epoch]
    best_ap = max((h.get("pixel_ap") or -1.0 for h in history), default=-1.0)
    train_config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}
    train_config = {k: v for k, v in train_config.items() if v is not None}
    train_config["recipe"] = recipe.to_dict()

    from tqdm import tqdm

    t_start = time.perf_counter()
    end_epoch = cfg.epochs if stop_after is None else min(cfg.epochs, start_epoch + stop_after)
    for epoch in range(start_epoch, end_epoch):
        dataset.set_epoch(epoch)
        sampler.set_epoch(epoch)
        model.train()
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (progress and main), leave=False)
        loss_sum = torch.zeros((), device=device)
        t_data = t_compute = 0.0
        t0 = time.perf_counter()
        gamma = cfg.gamma_start
        for step, batch in enumerate(loader):
            if step >= steps_per_epoch:
                break
            t1 = time.perf_counter()
            t_data += t1 - t0
            x = batch["input"].to(device, non_blocking=True)
            y = batch["mask"].to(device, non_blocking=True)
            gamma = gamma_at(epoch * steps_per_epoch + step, total_steps, cfg.gamma_start, cfg.gamma_end)
            loss = loss_fn(model(x), y, gamma)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
            t0 = time.perf_counter()
            t_compute += t0 - t1
            if not bar.disable:  # loss.item() syncs the device: only when someone watches the bar
                bar.set_postfix(loss=f"{loss.item():.4f}", gamma=f"{gamma:.2f}")
                bar.update()
        bar.close()
        scheduler.step()
        if distributed:
            dist.all_reduce(loss_sum)
            loss_sum /= world
        record: dict[str, Any] = {
            "epoch": epoch,
            "loss": float(loss_sum) / steps_per_epoch,
            "gamma": gamma,
            "lr": optimizer.param_groups[0]["lr"],
            "steps": steps_per_epoch,
            "data_s": round(t_data, 3),
            "compute_s": round(t_compute, 3),
        }
        last_epoch = epoch == end_epoch - 1
        if main:
            if eval_set is not None and ((epoch + 1) % cfg.val_every == 0 or last_epoch):
                record.update(metrics_dict(validate(core, eval_set, tiling, device)))
            history.append(record)
            atomic_write(log_path, lambda p: p.write_text("".join(json.dumps(h) + "\n" for h in history)))
            metrics = {k: v for k, v in record.items() if v is not None}
            metrics.update({k: v for k, v in base_metrics.items() if v is not None})
            extra = {
                "optimizer_state_dict": optimizer.state_dict(),
                "scheduler_state_dict": scheduler.state_dict(),
            }
            common = dict(image_type=cfg.image_type, image_size=image_size, epoch=epoch, seed=cfg.seed,
                          metrics=metrics, train_config=train_config)
            save_checkpoint(last_path, core, extra=extra, **common)
            ap = record.get("pixel_ap")
            if (ap is not None and ap > best_ap) or (eval_set is None and last_epoch):
                best_ap = ap if ap is not None else best_ap
                save_checkpoint(best_path, core, **common)
            echo(f"epoch {epoch + 1}/{cfg.epochs}: " + _fmt(record))
        if distributed:
            dist.barrier()

    rank_diff = None
    if distributed:
        flat = _flat_params(core)
        gathered = [torch.empty_like(flat) for _ in range(world)]
        dist.all_gather(gathered, flat)
        rank_diff = max(float((g - gathered[0]).abs().max()) for g in gathered)
    result = TrainResult(
        best_checkpoint=best_path if best_path.exists() else None,
        last_checkpoint=last_path,
        metrics_log=log_path,
        history=history,
        baseline=base_metrics,
        rank_weight_max_diff=rank_diff,
    )
    if main:
        final = history[-1] if history else {}
        summary = {
            "event": "summary",
            "epochs": cfg.epochs,
            "world_size": world,
            "seconds": round(time.perf_counter() - t_start, 1),
            "best_pixel_ap": best_ap if best_ap >= 0 else None,
            **{k: final.get(k) for k in ("image_auroc", "pixel_auroc", "pixel_ap")},
            **base_metrics,
            "rank_weight_max_diff": rank_diff,
            "recipe": recipe.to_dict(),
            "stem": cfg.stem,
        }
        atomic_write(out_dir / "summary.json", lambda p: p.write_text(json.dumps(summary, indent=2)))
        echo(
            f"done: {end_epoch - start_epoch} epoch(s) in {summary['seconds']}s on {world} process(es); "
            f"model {_fmt(final)}"
            + (f" | baseline {_fmt(base_metrics, 'baseline_')}" if base_metrics else "")
            + f" | checkpoints in {out_dir}"
        )
    if distributed:
        dist.barrier()
        if own_group:
            dist.destroy_process_group()
    return result


def _fmt(d: dict[str, Any], prefix: str = "") -> str:
    keys = ["loss", "gamma", "image_auroc", "pixel_auroc", "pixel_ap"]
    parts = []
    for k in keys:
        v = d.get(prefix + k)
        if isinstance(v, float) and math.isfinite(v):
            parts.append(f"{k}={v:.4f}")
    return " ".join(parts) if parts else "(no metrics)"
