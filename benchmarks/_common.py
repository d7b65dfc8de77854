"""What more than one benchmark needs and no package should ship (benchmarks import nothing from tests/).

Imported as ``from _common import ...``: a benchmark runs as a script, so this folder is on sys.path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bgsdk.contract import CONTRACT_KEY, Contract
from bgsdk.tiling import tiling_for

REPO = Path(__file__).resolve().parent.parent
STRIP = (976, 176)
OPSET = 17
# The ISA flags that decide INT8 and bf16 speed (VNNI: int8 dot products; AMX: int8/bf16 tiles).
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def cpu_info() -> str:
    """``CPU: <model>, <n> logical cores; avx2=yes ...`` from /proc/cpuinfo, for every benchmark's header."""
    model, flags = "?", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "?":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    have = " ".join(f"{fl}={'yes' if fl in flags else 'no'}" for fl in CPU_FLAGS)
    return f"CPU: {model}, {os.cpu_count()} logical cores; {have}"


def run_ortworker(model: Path, inp: Path, batch: int, threads: int, repeat: int, extra: Sequence[str] = ()) -> Any:
    """Time ``model`` on ``inp`` in a fresh process (benchmarks/ortworker.py, so its peak RSS is this model's
    alone); returns the JSON object the worker prints last."""
    cmd = [sys.executable, str(REPO / "benchmarks" / "ortworker.py"), str(model)]
    cmd += ["--threads", str(threads), "--batch", str(batch), "--repeat", str(repeat), "--input", str(inp), *extra]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def strip_checkpoint(path: Path, model: Any, data: Path | None = None) -> Path:
    """Save a torch ``model`` as an epoch-0 strip checkpoint; ``data`` is recorded as its training data set
    (build-model calibrates and verifies on it)."""
    from bgtrain.checkpoint import save_checkpoint

    config = {"training_dataset_path": str(data)} if data is not None else None
    return save_checkpoint(path, model, image_type="strip", image_size=STRIP, epoch=0, seed=0, train_config=config)


def random_strip_checkpoint(
    path: Path, width: int, seed: int = 0, data: Path | None = None, stem: str = "plain"
) -> Path:
    """:func:`strip_checkpoint` of a freshly initialised UNet (``torch.manual_seed(seed)``): latency and
    memory do not depend on trained weights. ``stem`` is the network's input stem (bgtrain.model.STEMS)."""
    import torch

    from bgtrain.model import UNet

    torch.manual_seed(seed)
    return strip_checkpoint(path, UNet(base_width=width, stem=stem).eval(), data)


def make_conv_stack(path: Path, width: int = 16, depth: int = 4, height: int = STRIP[0], img_w: int = STRIP[1]) -> Path:
    """A contract-shaped stand-in model: ``depth`` Conv3x3+ReLU layers of ``width`` channels, then
    ``output = concat(sigmoid(conv), 0, 0)``. Heavier than the C++ example's one-conv stand-in, so the
    SDK's overhead is measured against some real work; needs onnx (build/dev extra)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(10)
    nodes, inits = [], []
    cur, cin = "input", 3
    for i in range(depth + 1):
        cout = width if i < depth else 1
        w = rng.normal(0.0, 1.0, size=(cout, cin, 3, 3)).astype(np.float32) / np.float32(np.sqrt(9 * cin))
        b = rng.normal(0.0, 0.5, size=(cout,)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        act, out = ("Relu", f"r{i}") if i < depth else ("Sigmoid", "p")
        nodes += [
            helper.make_node("Conv", [cur, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
            helper.make_node(act, [f"c{i}"], [out]),
        ]
        cur, cin = out, cout
    nodes += [
        helper.make_node("Sub", ["p", "p"], ["z"]),  # exact +0, same shape, any batch
        helper.make_node("Concat", ["p", "z", "z"], ["output"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "bgsdk_bench_standin",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, height, img_w])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3, height, img_w])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    if (height, img_w) == STRIP:
        helper.set_model_props(model, {CONTRACT_KEY: Contract.from_tiling(tiling_for("strip")).to_json()})
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return Path(path)
