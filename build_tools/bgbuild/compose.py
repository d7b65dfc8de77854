"""Compose the full-image graph around the patch model, with native ONNX ops (docs/design.md).

The graph is written programmatically with spox, not traced from a Python loop:
every patch position and crop bound comes from :mod:`bgsdk.tiling`, so the
builder, the PyTorch reference and the SDK share one layout rule.

Data flow, for ``input (N,3,H,W)`` and a tiling of ``T`` patches::

    Slice x T (axes 2,3)  ->  Concat(axis 0)            (T*N,3,P,P), patch-major
    patch model (inlined once), head folded              (T*N,1,P,P) defect logit l1 - l0
    Sigmoid                                              (T*N,1,P,P) = Softmax(logits)[:, 1]
    Reshape (T,N,P,P)                                    patch-major makes this a view
    Slice each patch's centre region -> Concat columns (axis 3) -> Concat rows (axis 2)
    Transpose -> (N,1,H,W) -> Pad two zero channels      output (N,3,H,W)

Patch-major order (patch 0 of every image, then patch 1 of every image, ...)
falls out of slicing the batched input once per position. Reshaping the
probabilities to ``(T,N,P,P)`` is exact for that order, so patch ``t`` of image
``n`` is ``[t, n]`` -- one static Slice per patch crops it for all images at once.

``patch_batch=K`` (K < T) runs the patch model on chunks of K patch positions:
``unrolled`` (default) inlines one call per chunk, all calls reading the same
weights; ``hybrid`` runs only the full-resolution layers per chunk and the
low-resolution middle of the UNet once on all patches (:mod:`bgbuild.split`);
``loop`` puts the patch model in a ``Loop`` over chunks of the flattened
``(T*N)`` batch (kept for comparison; docs/design.md has the measurements).
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

import numpy as np
import onnx
from onnx import numpy_helper
from spox import Tensor, Var, argument, build, inline

# I/O names: their home is bgsdk.contract.
from bgsdk.contract import INPUT_NAME, OUTPUT_NAME
from bgsdk.contract import PATCH_INPUT_NAME as PATCH_INPUT
from bgsdk.contract import PATCH_OUTPUT_NAME as PATCH_OUTPUT
from bgsdk.tiling import Patch, Tiling

from .head import DEFECT_LOGIT, fold_two_class_head
from .split import split_by_resolution

__all__ = [
    "ComposeOptions",
    "compose_full_model",
    "compose_whole_model",
    "CHUNKINGS",
    "SUPPORTED_OPSETS",
    "opset_module",
    "INPUT_NAME",
    "OUTPUT_NAME",
]

# spox ships op modules v17..; the TorchScript exporter of torch 2.13 goes up to 20.
SUPPORTED_OPSETS = tuple(range(17, 21))
CHUNKINGS = ("unrolled", "hybrid", "loop")


def opset_module(opset: int) -> ModuleType:
    """The spox module generating ``ai.onnx`` ops of this opset."""
    if opset not in SUPPORTED_OPSETS:
        raise ValueError(f"opset {opset} is not supported; choose one of {list(SUPPORTED_OPSETS)}")
    return importlib.import_module(f"spox.opset.ai.onnx.v{opset}")


@dataclass(frozen=True)
class ComposeOptions:
    """How to wrap the patch model.

    ``patch_batch``: patches per patch-model call; ``None`` or >= the patch count
    means one call on the whole batch (no ``Loop`` in the graph).
    """

    opset: int = 17
    patch_batch: int | None = None
    # K < T: "unrolled" chunks sharing one set of weights; "hybrid": only the full-resolution layers in
    # chunks, the low-resolution middle once on all patches (faster, ~2x the memory); or a "loop"
    chunking: str = "unrolled"
    hybrid_levels: int = 1  # hybrid: resolution levels run in chunks (1 = only the full-resolution layers)

    def __post_init__(self) -> None:
        if self.chunking not in CHUNKINGS:
            raise ValueError(f"chunking must be one of {CHUNKINGS}, got {self.chunking!r}")


def _check_patch_model(patch_model: onnx.ModelProto, patch: int | tuple[int, int]) -> None:
    g = patch_model.graph
    ins = [i.name for i in g.input if i.name not in {t.name for t in g.initializer}]
    outs = [o.name for o in g.output]
    if ins != [PATCH_INPUT] or outs != [PATCH_OUTPUT]:
        raise ValueError(f"patch model must map {PATCH_INPUT!r} -> {PATCH_OUTPUT!r}, got inputs {ins} outputs {outs}")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in g.input[0].type.tensor_type.shape.dim]
    ph, pw = (patch, patch) if isinstance(patch, int) else patch
    if len(dims) != 4 or dims[1:] != [3, ph, pw]:
        raise ValueError(f"patch model input must be (B,3,{ph},{pw}), got {dims}")


I64 = Callable[[list[int]], Var]


def _with_folded_head(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with its 2-class head folded to one defect logit (:mod:`bgbuild.head`), when it can be."""
    return fold_two_class_head(model) or model


def _probability(op: ModuleType, outputs: dict[str, Var], _i64: I64) -> Var:
    """The network's outputs -> defect probability ``(B,1,P,P)``: Sigmoid of the folded logit, else Softmax[:, 1]."""
    if DEFECT_LOGIT in outputs:
        return op.sigmoid(outputs[DEFECT_LOGIT])
    prob = op.softmax(outputs[PATCH_OUTPUT], axis=1)
    return op.slice(prob, _i64([1]), _i64([2]), _i64([1]))


def _defect_probability(op: ModuleType, run_patch_model: Any, chunk: Var, _i64: I64) -> Var:
    """Patch model on ``chunk`` -> defect probability ``(B,1,P,P)``."""
    return _probability(op, run_patch_model(**{PATCH_INPUT: chunk}), _i64)


def _weights_as_inputs(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A copy of ``model`` whose initializers are graph inputs, and their values.

    ``spox.inline`` copies a model's initializers into every call; with the
    weights as inputs each unrolled call is handed the *same* constants, so the
    file and the session hold one copy of the weights however many chunks there are.
    """
    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    g = bare.graph
    values = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    declared = {i.name for i in g.input}
    for t in g.initializer:
        if t.name not in declared:
            g.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    del g.initializer[:]
    return bare, values


def _unrolled(
    op: ModuleType,
    patch_model: onnx.ModelProto,
    groups: list[list[Patch]],
    crops: Callable[[list[Patch]], Var],
    _i64: I64,
) -> Var:
    """One patch-model call per group of patch positions, all calls sharing one set of weights.

    The calls are listed chunk after chunk; ONNX Runtime's sequential executor runs
    them in that order and frees each chunk's activations before the next
    starts, so the peak holds one chunk's activations (docs/design.md).
    """
    bare, values = _weights_as_inputs(patch_model)
    run = inline(bare)
    weights = {name: op.constant(value=v) for name, v in values.items()}
    parts = [_defect_probability(op, lambda **kw: run(**kw, **weights), crops(g), _i64) for g in groups]
    return op.concat(parts, axis=0)


def _hybrid(
    op: ModuleType,
    patch_model: onnx.ModelProto,
    groups: list[list[Patch]],
    crops: Callable[[list[Patch]], Var],
    n_images: Var,
    levels: int,
    _i64: I64,
) -> Var:
    """Full-resolution layers per chunk of patch positions, the low-resolution middle once on all patches.

    ``front`` runs on each chunk; its ``down`` outputs are concatenated (patch-major,
    as the chunks are) and the ``middle`` runs once; its ``up`` outputs are split back
    into the chunks' rows (``len(group) * N`` each) and each chunk's ``back`` finishes
    it with the chunk's own ``skips``. All parts share one set of weights.
    """
    parts = split_by_resolution(patch_model, levels)
    if parts is None:  # no low-resolution layers: all of it runs in chunks
        return _unrolled(op, patch_model, groups, crops, _i64)
    _, values = _weights_as_inputs(patch_model)
    weights = {name: op.constant(value=v) for name, v in values.items()}

    def runner(part: onnx.ModelProto) -> Callable[..., dict[str, Var]]:
        bare, vals = _weights_as_inputs(part)
        fn = inline(bare)
        return lambda **kw: fn(**kw, **{k: weights[k] for k in vals})

    front, middle, back = runner(parts.front), runner(parts.middle), runner(parts.back)
    chunks = [crops(g) for g in groups]
    fronts = [{**front(**{PATCH_INPUT: c}), PATCH_INPUT: c} for c in chunks]
    mids = middle(**{t: op.concat([f[t] for f in fronts], axis=0) for t in parts.down})
    rows = op.mul(_i64([len(g) for g in groups]), n_images)  # rows of each chunk: len(group) * N
    ups = {t: op.split(mids[t], rows, axis=0, outputs_count=len(groups)) for t in parts.up}
    probs = []
    for i, f in enumerate(fronts):
        probs.append(_probability(op, back(**{t: f[t] for t in parts.skips}, **{t: ups[t][i] for t in parts.up}), _i64))
    return op.concat(probs, axis=0)


def _looped(op: ModuleType, run_patch_model: Any, batch: Var, K: int, P: int, _i64: I64) -> Var:
    """The patch model in a ``Loop`` over chunks of K rows of the patch-major batch (any N)."""
    total = op.slice(op.shape(batch), _i64([0]), _i64([1]))  # (1,) = T*N
    # ceil(T*N / K); K=1 written without the no-op arithmetic (onnxsim then loops to its iteration limit).
    trips = total if K == 1 else op.div(op.add(total, _i64([K - 1])), _i64([K]))
    # An empty (0,1,P,P) start value whose first dim spox cannot see as static:
    # the carried tensor grows every iteration, so its type must leave dim 0 open.
    empty_shape = op.concat([op.mul(total, _i64([0])), _i64([1, P, P])], axis=0)
    acc0 = op.constant_of_shape(empty_shape, value=np.zeros((1,), np.float32))

    def body(i: Var, cond: Var, acc: Var) -> list[Var]:
        start = i if K == 1 else op.mul(i, _i64([K]))
        chunk = op.slice(batch, start, op.add(start, _i64([K])), _i64([0]))  # end clamps at T*N
        acc_next = op.concat([acc, _defect_probability(op, run_patch_model, chunk, _i64)], axis=0)
        return [op.identity(cond), acc_next]

    with warnings.catch_warnings():
        # spox notes that the carried tensor has no static shape: by design, it grows.
        warnings.filterwarnings("ignore", message=".*was not concrete.*")
        (probs,) = op.loop(op.squeeze(trips, _i64([0])), None, [acc0], body=body)
    return probs


def compose_whole_model(core_model: onnx.ModelProto, height: int, width: int, opset: int = 17) -> onnx.ModelProto:
    """Whole-strip model ``input (N,3,H,W) -> output (N,3,H,W)``: one network pass, no padding.

    ``core_model`` is the whole-strip network exported at the strip's size (``input (B,3,H,W) -> logits
    (B,2,H,W)``, :func:`bgbuild.export.export_whole_model`: the stem per tile, the body once). Data flow::

        whole-strip network (head folded) -> Sigmoid = Softmax[:, 1] -> Pad two zero channels

    The reference is :func:`bgtrain.infer.whole_image`.
    """
    op = opset_module(opset)
    _check_patch_model(core_model, (height, width))

    def _i64(values: list[int]) -> Var:
        return op.constant(value=np.asarray(values, dtype=np.int64))

    x = argument(Tensor(np.float32, ("N", 3, height, width)))
    heat = _defect_probability(op, inline(_with_folded_head(core_model)), x, _i64)  # (N,1,H,W)
    out = op.pad(heat, _i64([0, 0, 0, 0, 0, 2, 0, 0]), op.constant(value=np.float32(0.0)))
    model = build({INPUT_NAME: x}, {OUTPUT_NAME: out})
    _set_output_shape(model, height, width)
    return model


def _stitch(op: ModuleType, probs: Var, tiling: Tiling, _i64: I64) -> Var:
    """Patch-major ``(T*N,1,P,P)`` probabilities -> ``(N,1,H,W)``: each patch's keep region, for all images at once."""
    P = tiling.patch
    grid = op.reshape(probs, _i64([tiling.num_patches, -1, P, P]))
    rows = []
    for r, row in enumerate(tiling.rows):
        cols = []
        for c, col in enumerate(tiling.cols):
            t = r * len(tiling.cols) + c
            cols.append(
                op.slice(
                    grid,
                    _i64([t, row.keep_start, col.keep_start]),
                    _i64([t + 1, row.keep_stop, col.keep_stop]),
                    _i64([0, 2, 3]),
                )
            )
        rows.append(cols[0] if len(cols) == 1 else op.concat(cols, axis=3))
    full = rows[0] if len(rows) == 1 else op.concat(rows, axis=2)  # (1,N,H,W)
    return op.transpose(full, perm=[1, 0, 2, 3])


def compose_full_model(
    patch_model: onnx.ModelProto, tiling: Tiling, options: ComposeOptions | None = None
) -> onnx.ModelProto:
    """Full-image model ``input (N,3,H,W) -> output (N,3,H,W)`` around ``patch_model``.

    ``patch_model`` must map ``input (B,3,P,P)`` to ``logits (B,2,P,P)`` with a
    dynamic B (channel 0 background, channel 1 defect).
    """
    options = options or ComposeOptions()
    op = opset_module(options.opset)
    P = tiling.patch
    _check_patch_model(patch_model, P)
    patch_model = _with_folded_head(patch_model)
    patches = list(tiling.patches())
    T = len(patches)
    K = options.patch_batch
    if K is not None and K < 1:
        raise ValueError(f"patch batch must be >= 1, got {K}")

    def _i64(values: list[int]) -> Var:
        return op.constant(value=np.asarray(values, dtype=np.int64))

    x = argument(Tensor(np.float32, ("N", 3, tiling.height, tiling.width)))

    def crops(group: list[Patch]) -> Var:
        """Slice each patch of ``group`` out of the batched input; Concat -> patch-major (len*N,3,P,P)."""
        cut = [
            op.slice(x, _i64([p.row.start, p.col.start]), _i64([p.row.stop, p.col.stop]), _i64([2, 3])) for p in group
        ]
        return cut[0] if len(cut) == 1 else op.concat(cut, axis=0)

    if K is None or K >= T:
        # One call on the whole batch.
        probs = _defect_probability(op, inline(patch_model), crops(patches), _i64)
    elif options.chunking == "hybrid":
        n_images = op.slice(op.shape(x), _i64([0]), _i64([1]))
        probs = _hybrid(
            op, patch_model, [patches[i : i + K] for i in range(0, T, K)], crops, n_images, options.hybrid_levels, _i64
        )
    elif options.chunking == "unrolled":
        probs = _unrolled(op, patch_model, [patches[i : i + K] for i in range(0, T, K)], crops, _i64)
    else:
        probs = _looped(op, inline(patch_model), crops(patches), K, P, _i64)

    # 3. Patch-major -> (T,N,P,P); crop each centre region for all images at once; stitch.
    heat = _stitch(op, probs, tiling, _i64)  # (N,1,H,W)

    # 4. Two zero channels (the I/O contract, bgsdk.contract).
    out = op.pad(heat, _i64([0, 0, 0, 0, 0, 2, 0, 0]), op.constant(value=np.float32(0.0)))

    model = build({INPUT_NAME: x}, {OUTPUT_NAME: out})
    _set_output_shape(model, tiling.height, tiling.width)
    return model


def _set_output_shape(model: onnx.ModelProto, height: int, width: int) -> None:
    """Declare ``output`` as ``(N,3,H,W)`` with the same symbolic N as ``input``."""
    out = model.graph.output[0]
    shape = out.type.tensor_type.shape
    del shape.dim[:]
    for v in ("N", 3, height, width):
        d = shape.dim.add()
        if isinstance(v, str):
            d.dim_param = v
        else:
            d.dim_value = v
