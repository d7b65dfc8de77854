"""Small contract-conforming (and deliberately broken) ONNX models for the SDK tests.

The real full-image model comes from ``build-model``; the SDK only relies on the
I/O contract, so these stand-ins honour exactly that: input ``input``
``(N,3,H,W)`` float32, output ``output`` ``(N,3,H,W)`` with channel 0 =
``Sigmoid(Conv3x3(input))`` and channels 1-2 exactly zero. The conv mixes all
three channels with asymmetric weights, so a transposed, flipped or channel-
swapped input changes the output (layout bugs cannot hide).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import tifffile
from onnx import TensorProto, helper, numpy_helper

from bgsdk.contract import CONTRACT_KEY, Contract
from bgsdk.tiling import tiling_for

OPSET = 17
STRIP = (976, 176)


def _weights(cin: int, cout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = rng.normal(0.0, 1.0, size=(cout, cin, 3, 3)).astype(np.float32)
    b = rng.normal(0.0, 0.5, size=(cout,)).astype(np.float32)
    return w, b


def _save(model: onnx.ModelProto, path: Path, metadata: dict[str, str] | None) -> Path:
    for k, v in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    model.producer_name = "bgsdk-tests"
    onnx.checker.check_model(model, full_check=True)
    path = Path(path)
    onnx.save(model, path)
    return path


def strip_contract_json(image_type: str = "strip") -> str:
    return Contract.from_tiling(tiling_for(image_type)).to_json()


def make_full_model(
    path: Path,
    height: int = STRIP[0],
    width: int = STRIP[1],
    batch: str | int = "N",
    contract_json: str | None = None,
    extra_metadata: dict[str, str] | None = None,
    input_type: int = TensorProto.FLOAT,
    output_name: str = "output",
    seed: int = 0,
    channels: int = 3,
) -> Path:
    """Contract-shaped model: ``output = concat(sigmoid(conv(x)), 0, 0)``; ``channels`` input channels
    (3: target, ref1, ref2; 2 for a model that takes a golden-template pair)."""
    w, b = _weights(channels, 1, seed)
    nodes = []
    x = "input"
    if input_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", ["input"], ["x32"], to=TensorProto.FLOAT))
        x = "x32"
    nodes += [
        helper.make_node("Conv", [x, "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["c"], ["p"]),
        helper.make_node("Sub", ["p", "p"], ["z"]),  # exact +0, same shape, any batch
        helper.make_node("Concat", ["p", "z", "z"], [output_name], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "bgsdk_test_full",
        [helper.make_tensor_value_info("input", input_type, [batch, channels, height, width])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch, 3, height, width])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    meta = dict(extra_metadata or {})
    if contract_json is not None:
        meta[CONTRACT_KEY] = contract_json
    return _save(model, path, meta)


def make_strip_model(path: Path, with_contract: bool = True, **kw: object) -> Path:
    meta = {"bgsdk.producer": '{"name": "sdk_models", "version": "test"}', "note": "plain text value"}
    return make_full_model(
        path,
        contract_json=strip_contract_json() if with_contract else None,
        extra_metadata=meta,
        **kw,  # type: ignore[arg-type]
    )


def make_double_detection_model(path: Path) -> Path:
    """A strip model whose heatmap is double detection, ``min(|T-R1|,|T-R2|)`` of the /255-scaled input.

    Scored by ``bgsdk evaluate`` it must reproduce the double-detection baseline's numbers.
    """

    def channel(k: int) -> list[onnx.NodeProto]:
        return [helper.make_node("Slice", ["input", f"s{k}", f"e{k}", "axis"], [f"c{k}"])]

    nodes = channel(0) + channel(1) + channel(2)
    nodes += [
        helper.make_node("Sub", ["c0", "c1"], ["d1s"]),
        helper.make_node("Abs", ["d1s"], ["d1"]),
        helper.make_node("Sub", ["c0", "c2"], ["d2s"]),
        helper.make_node("Abs", ["d2s"], ["d2"]),
        helper.make_node("Min", ["d1", "d2"], ["dd"]),
        helper.make_node("Sub", ["dd", "dd"], ["z"]),
        helper.make_node("Concat", ["dd", "z", "z"], ["output"], axis=1),
    ]
    consts = [numpy_helper.from_array(np.array([1], np.int64), "axis")]
    for k in range(3):
        consts += [
            numpy_helper.from_array(np.array([k], np.int64), f"s{k}"),
            numpy_helper.from_array(np.array([k + 1], np.int64), f"e{k}"),
        ]
    h, w = STRIP
    graph = helper.make_graph(
        nodes,
        "bgsdk_test_double_detection",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, h, w])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3, h, w])],
        initializer=consts,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    return _save(model, path, {CONTRACT_KEY: strip_contract_json()})


def make_patch_model(path: Path, patch: int = 128) -> Path:
    """What ``torch.onnx.export`` of the UNet gives: ``input`` -> ``logits`` (B,2,P,P)."""
    w, b = _weights(3, 2, 1)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w", "b"], ["logits"], pads=[1, 1, 1, 1])],
        "bgsdk_test_patch",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["B", 3, patch, patch])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["B", 2, patch, patch])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    return _save(model, path, None)


def make_corrupt_model(path: Path, valid_model: Path | None = None) -> Path:
    """A truncated copy of a valid model (or junk bytes)."""
    data = Path(valid_model).read_bytes()[:200] if valid_model else b"this is not an onnx model\x00\x01"
    Path(path).write_bytes(data)
    return Path(path)


# --------------------------------------------------------------------------- the SDK test environment
# Built once per test session by the ``sdk_env`` fixture in tests/conftest.py.


@dataclasses.dataclass(frozen=True)
class SdkEnv:
    root: Path
    strip_model: Path  # contract metadata, dynamic batch
    plain_model: Path  # same weights, no metadata
    square_model: Path  # 256x256 'square' contract, fixed batch 2
    patch_model: Path
    strips: tuple[Path, ...]  # (4,976,176) float32 TIFFs


def random_strip(seed: int, channels: int = 4, hw: tuple[int, int] = STRIP) -> np.ndarray:
    """Channel-first float32 0..255 with structure (a gradient + noise), not just noise."""
    rng = np.random.default_rng(seed)
    h, w = hw
    ramp = (
        np.linspace(0, 120, w, dtype=np.float32)[None, None, :] + np.linspace(0, 60, h, dtype=np.float32)[None, :, None]
    )
    return np.clip(ramp + rng.uniform(0, 75, size=(channels, h, w)), 0, 255).astype(np.float32)


def build_sdk_env(root: Path) -> SdkEnv:
    """The SDK tests' models and strips, written under ``root``."""
    strips = []
    (root / "strips").mkdir()
    for i in range(3):
        p = root / "strips" / f"strip{i}.tiff"
        tifffile.imwrite(p, random_strip(i))
        strips.append(p)
    return SdkEnv(
        root=root,
        strip_model=make_strip_model(root / "strip.onnx"),
        plain_model=make_strip_model(root / "plain.onnx", with_contract=False),
        square_model=make_full_model(
            root / "square.onnx", 256, 256, batch=2, contract_json=strip_contract_json("square")
        ),
        patch_model=make_patch_model(root / "patch.onnx"),
        strips=tuple(strips),
    )
