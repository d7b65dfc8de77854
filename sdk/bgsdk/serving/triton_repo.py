"""A Triton Inference Server model repository for a bgsdk model (``bgsdk export-triton``).

Layout (Triton's)::

    DIR/<name>/config.pbtxt
    DIR/<name>/1/model.onnx

The model runs unchanged on Triton's ONNX Runtime backend (``platform:
"onnxruntime_onnx"``): it is one ONNX file with a fixed I/O contract and a
dynamic batch dimension, so Triton's dynamic batcher can merge requests from
many clients into one model call. The config is written as protobuf text by
hand (the runtime SDK does not depend on protobuf); the tests parse it with
Triton's own ``model_config`` protobuf. Every ``bgsdk.*`` metadata entry of the
model (contract, operating point, provenance) is copied into ``parameters`` so
that :class:`bgsdk.TritonSegmenter` can read it back from the server.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .._session import ModelInfo, describe, open_session
from ..errors import ModelError
from ..io import atomic_write

__all__ = ["TritonRepoOptions", "config_text", "export_triton", "pbtxt_string", "METADATA_PREFIX"]

log = logging.getLogger(__name__)

#: Metadata keys with this prefix become config ``parameters``.
METADATA_PREFIX = "bgsdk."
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class TritonRepoOptions:
    """What goes into ``config.pbtxt``.

    ``max_batch_size``: images per model call Triton may form; ``queue_delay_us``:
    how long the dynamic batcher waits for more requests (``None``: no dynamic
    batching, each request runs alone); ``cpu_instances``/``gpu_instances``:
    model copies per device kind (``gpus``: which GPUs, default all);
    ``threads``: ONNX Runtime intra-op threads per instance (``None``: backend default).
    """

    name: str = "bgsdk"
    max_batch_size: int = 8
    queue_delay_us: int | None = 500
    cpu_instances: int = 1
    gpu_instances: int = 0
    gpus: Sequence[int] = ()
    threads: int | None = None

    def check(self) -> None:
        if not _NAME.match(self.name) or self.name in (".", ".."):
            raise ValueError(f"model name must be letters, digits, '_', '.', '-', got {self.name!r}")
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.queue_delay_us is not None and self.queue_delay_us < 0:
            raise ValueError(f"queue_delay_us must be >= 0, got {self.queue_delay_us}")
        if self.cpu_instances < 0 or self.gpu_instances < 0 or self.cpu_instances + self.gpu_instances == 0:
            raise ValueError("need at least one CPU or GPU instance")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")


def pbtxt_string(value: str) -> str:
    """A protobuf text-format string literal (quotes, backslashes, control characters escaped)."""
    out = []
    for ch in value:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\{ord(ch):03o}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _tensor(name: str, dims: Sequence[int]) -> str:
    return f"  {{\n    name: {pbtxt_string(name)}\n    data_type: TYPE_FP32\n    dims: [ {', '.join(map(str, dims))} ]\n  }}"


def _instance_groups(opt: TritonRepoOptions) -> str:
    groups = []
    if opt.cpu_instances:
        groups.append(f"  {{\n    count: {opt.cpu_instances}\n    kind: KIND_CPU\n  }}")
    if opt.gpu_instances:
        gpus = f"\n    gpus: [ {', '.join(map(str, opt.gpus))} ]" if opt.gpus else ""
        groups.append(f"  {{\n    count: {opt.gpu_instances}\n    kind: KIND_GPU{gpus}\n  }}")
    return "instance_group [\n" + ",\n".join(groups) + "\n]\n"


def _parameter(key: str, value: str) -> str:
    return f"parameters {{\n  key: {pbtxt_string(key)}\n  value: {{ string_value: {pbtxt_string(value)} }}\n}}\n"


def config_text(info: ModelInfo, options: TritonRepoOptions) -> str:
    """``config.pbtxt`` for ``info`` (a validated bgsdk model) on the ONNX Runtime backend."""
    options.check()
    if info.batch is not None:
        raise ModelError(
            info.path,
            f"has a fixed batch size {info.batch}; Triton batching needs a dynamic one (rebuild it with build-model)",
        )
    dims = (3, info.height, info.width)
    text = (
        f"name: {pbtxt_string(options.name)}\n"
        'platform: "onnxruntime_onnx"\n'
        f"max_batch_size: {options.max_batch_size}\n"
        f"input [\n{_tensor(info.input_name, dims)}\n]\n"
        f"output [\n{_tensor(info.output_name, dims)}\n]\n"
    )
    if options.queue_delay_us is not None:
        text += f"dynamic_batching {{\n  max_queue_delay_microseconds: {options.queue_delay_us}\n}}\n"
    text += _instance_groups(options)
    if options.threads is not None:
        text += _parameter("intra_op_thread_count", str(options.threads))
        text += _parameter("inter_op_thread_count", "1")
    for key in sorted(info.metadata):
        if key.startswith(METADATA_PREFIX):
            text += _parameter(key, info.metadata[key])
    return text


def export_triton(
    model_path: str | os.PathLike[str],
    repo_dir: str | os.PathLike[str],
    options: TritonRepoOptions | None = None,
) -> Path:
    """Write ``repo_dir/<name>/config.pbtxt`` and ``<name>/1/model.onnx``; returns the model folder.

    The model is opened and checked against the contract first (a file that
    ``Segmenter`` would refuse is refused here too), so a repository is never
    written for a model that cannot serve. Both files are written atomically;
    an existing model folder of the same name is updated in place.
    """
    options = options or TritonRepoOptions()
    options.check()
    info = describe(open_session(model_path), model_path)
    text = config_text(info, options)
    model_dir = Path(repo_dir) / options.name
    atomic_write(model_dir / "1" / "model.onnx", lambda tmp: shutil.copyfile(model_path, tmp))
    atomic_write(model_dir / "config.pbtxt", lambda tmp: tmp.write_text(text, encoding="utf-8"))
    log.info(
        "wrote Triton model %s (%s)",
        model_dir,
        ", ".join(sorted(k for k in info.metadata if k.startswith(METADATA_PREFIX))),
    )
    return model_dir
