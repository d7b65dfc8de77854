"""Hostile model files: every one is refused with one ``ModelError`` line naming the file; the CLI exits 2.

Covers truncated and corrupted files (every cut point class, seeded byte flips), a
wrong I/O contract (names, rank, dtype, channels), missing or contradictory
metadata, external-data references that leave the model's folder (refused before
ONNX Runtime opens anything, without touching the target), a model whose output is
NaN/Inf, and integrity against the ``model.json`` manifest (``verify=True``,
``bgsdk inspect --verify``). The wire-format walk of :mod:`bgsdk._modelguard` is
checked against the ``onnx`` package's own view of the same models.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import _get_all_tensors, uses_external_data

from bgbuild.artifact import write_artifacts
from bgsdk import ModelError, Segmenter
from bgsdk._modelguard import MAX_DEPTH, WireError, external_data_locations
from bgsdk.cli import main as bgsdk_main
from bgsdk.contract import CONTRACT_KEY, Contract
from bgsdk.tiling import plan_tiling, tiling_for
from tests.helpers.cli import invoke

H, W = 64, 32  # a small full-image size: the checks do not depend on the size
OPSET = 17


def contract_json(**changes: object) -> str:
    """A consistent contract for H x W (patch 32), with ``changes`` applied to its JSON fields."""
    d = json.loads(Contract.from_tiling(plan_tiling(H, W, 32)).to_json())
    d.update(changes)
    return json.dumps(d)


def make_model(
    path: Path,
    *,
    in_name: str = "input",
    out_name: str = "output",
    in_shape: list[object] | None = None,
    out_shape: list[object] | None = None,
    in_type: int = TensorProto.FLOAT,
    out_type: int = TensorProto.FLOAT,
    in_channels: int = 3,
    out_channels: int = 3,
    metadata: dict[str, str] | None = None,
    producer: str = "bgsdk-tests",
    head: str = "sigmoid",
    external: str | None = None,
    rank3: bool = False,
) -> Path:
    """``output = concat(head(conv(x)), zeros...)``; every knob breaks one part of the contract."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(1, in_channels, 3, 3)).astype(np.float32)
    nodes = []
    x = in_name
    if in_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", [in_name], ["x32"], to=TensorProto.FLOAT))
        x = "x32"
    if rank3:  # (3,H,W) in and out: add and drop the batch axis around the body
        nodes.append(helper.make_node("Unsqueeze", [x, "axis0"], ["x4"]))
        x = "x4"
    nodes.append(helper.make_node("Conv", [x, "w"], ["c"], pads=[1, 1, 1, 1]))
    if head == "sigmoid":
        nodes.append(helper.make_node("Sigmoid", ["c"], ["p"]))
    elif head == "nan":  # sqrt(-(|c| + 1)): NaN everywhere
        nodes += [
            helper.make_node("Abs", ["c"], ["a"]),
            helper.make_node("Add", ["a", "one"], ["a1"]),
            helper.make_node("Neg", ["a1"], ["n"]),
            helper.make_node("Sqrt", ["n"], ["p"]),
        ]
    elif head == "inf":  # 1 / (c - c) = +-inf
        nodes += [helper.make_node("Sub", ["c", "c"], ["z0"]), helper.make_node("Div", ["one", "z0"], ["p"])]
    nodes.append(helper.make_node("Sub", ["p", "p"], ["z"]))
    nodes.append(helper.make_node("Concat", ["p"] + ["z"] * (out_channels - 1), ["o32"], axis=1))
    if rank3:
        nodes.append(helper.make_node("Squeeze", ["o32", "axis0"], ["o3"]))
    nodes.append(helper.make_node("Cast", ["o3" if rank3 else "o32"], [out_name], to=out_type))
    in_shape = in_shape or ([in_channels, H, W] if rank3 else ["N", in_channels, H, W])
    out_shape = out_shape or ([out_channels, H, W] if rank3 else ["N", out_channels, H, W])
    graph = helper.make_graph(
        nodes,
        "hostile",
        [helper.make_tensor_value_info(in_name, in_type, in_shape)],
        [helper.make_tensor_value_info(out_name, out_type, out_shape)],
        initializer=[
            numpy_helper.from_array(w, "w"),
            numpy_helper.from_array(np.ones(1, np.float32), "one"),
            numpy_helper.from_array(np.zeros(1, np.int64), "axis0"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name=producer)
    for k, v in (metadata if metadata is not None else {CONTRACT_KEY: contract_json()}).items():
        e = model.metadata_props.add()
        e.key, e.value = k, v
    path = Path(path)
    if external is not None:
        onnx.save(
            model, path, save_as_external_data=True, all_tensors_to_one_file=True, location=external, size_threshold=0
        )
    else:
        onnx.save(model, path)
    return path


def strip(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (3, H, W)).astype(np.float32)


def refused(path: Path, fragment: str, **kw: object) -> ModelError:
    with pytest.raises(ModelError) as info:
        Segmenter(path, **kw)  # type: ignore[arg-type]
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg, msg
    assert fragment in msg, msg
    return info.value


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("good") / "good.onnx")


def test_good_model_runs(good: Path) -> None:
    r = Segmenter(good).run(strip())
    assert r.heatmap.shape == (H, W) and np.isfinite(r.raw).all()


# ------------------------------------------------------------ truncated / corrupt
def test_every_truncation_is_refused_or_loses_nothing(good: Path, tmp_path: Path) -> None:
    """Cut the file at 60 points: a cut inside any message is a ModelError naming the file;
    a cut that happens to fall between trailing top-level fields may load, and then must give the
    full model's numbers. With ``verify=True`` (manifest) every cut is refused."""
    data = good.read_bytes()
    ref = Segmenter(good).run(strip()).raw
    write_artifacts(tmp_path / "m.onnx", data, {})
    cuts = sorted(
        {int(x) for x in np.linspace(1, len(data) - 1, 54)} | {1, 2, 3, len(data) - 3, len(data) - 2, len(data) - 1}
    )
    refused_n = loaded_n = 0
    for cut in cuts:
        p = tmp_path / f"cut{cut}.onnx"
        p.write_bytes(data[:cut])
        try:
            seg = Segmenter(p)
        except ModelError as exc:
            assert str(p) in str(exc) and "\n" not in str(exc)
            refused_n += 1
        else:
            np.testing.assert_array_equal(seg.run(strip()).raw, ref)
            loaded_n += 1
        (tmp_path / "m.onnx").write_bytes(data[:cut])  # same cut under the manifest's name
        refused(tmp_path / "m.onnx", "integrity check failed", verify=True)
    assert refused_n + loaded_n == len(cuts) and refused_n >= len(cuts) - 3


def test_seeded_byte_flips_are_refused_or_run_cleanly(
    good: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """60 corrupted copies (1-8 random bytes replaced): each is a ModelError, or a model that runs
    and gives a finite Result (a flipped weight byte still makes a valid model) -- never another
    exception. ``verify=True`` refuses every one."""
    data = good.read_bytes()
    write_artifacts(tmp_path / "v.onnx", data, {})
    outcomes = {"refused": 0, "ran": 0, "nan refused": 0}
    for seed in range(60):
        rng = np.random.default_rng(seed)
        buf = bytearray(data)
        for pos in rng.integers(0, len(buf), size=int(rng.integers(1, 9))):
            buf[int(pos)] = int(rng.integers(0, 256))
        if bytes(buf) == data:
            continue
        p = tmp_path / f"flip{seed}.onnx"
        p.write_bytes(bytes(buf))
        try:
            seg = Segmenter(p)
        except ModelError as exc:
            assert str(p) in str(exc) and "\n" not in str(exc)
            outcomes["refused"] += 1
        else:
            try:
                seg.run(strip())
                outcomes["ran"] += 1
            except ModelError:
                outcomes["nan refused"] += 1
        (tmp_path / "v.onnx").write_bytes(bytes(buf))
        refused(tmp_path / "v.onnx", "integrity check failed", verify=True)
    assert sum(outcomes.values()) >= 58 and outcomes["refused"] > 0
    # Nothing printed: ONNX Runtime's own provider-fallback retry (which prints a banner) is off.
    assert capfd.readouterr().out == ""


@pytest.mark.parametrize(
    "junk", [b"\x08", b"\xff" * 12, b"\x0a\xff\xff\xff\xff\x0f", b"\x1b\x1c", os.urandom(0) + b"\x3a\x05abc"]
)
def test_malformed_wire_format_is_named(tmp_path: Path, junk: bytes) -> None:
    p = tmp_path / "junk.onnx"
    p.write_bytes(junk)
    refused(p, "cannot be loaded as an ONNX model")


def test_deeply_nested_message_is_refused_without_recursion_error() -> None:
    payload = b""
    for _ in range(MAX_DEPTH + 5):  # graph(7) -> node(1) -> attribute(5) -> g(6) -> node ...
        payload = b"\x32" + _varint(len(payload)) + payload  # AttributeProto.g
        payload = b"\x2a" + _varint(len(payload)) + payload  # NodeProto.attribute
        payload = b"\x0a" + _varint(len(payload)) + payload  # GraphProto.node
    model = b"\x3a" + _varint(len(payload)) + payload  # ModelProto.graph
    with pytest.raises(WireError, match="nested deeper"):
        external_data_locations(model)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


# ------------------------------------------------------------ wrong I/O contract
@pytest.mark.parametrize(
    "kw, fragment",
    [
        (dict(in_name="image"), "expected exactly one input named 'input'"),
        (dict(out_name="probs"), "no output named 'output'"),
        (dict(rank3=True), "expected [N, 3, height, width]"),
        (dict(in_type=TensorProto.DOUBLE), "tensor(double)"),
        (dict(in_type=TensorProto.UINT8), "tensor(uint8)"),
        (dict(out_type=TensorProto.FLOAT16), "tensor(float16)"),
        (dict(in_channels=4), "expected [N, 3, height, width]"),
        (dict(in_channels=1), "expected [N, 3, height, width]"),
        (dict(out_channels=2), f"expected [N, 3, {H}, {W}]"),
        (dict(in_shape=["N", 3, 128, W]), f"contract says {H}x{W}"),
    ],
)
def test_wrong_io_contract(tmp_path: Path, kw: dict[str, object], fragment: str) -> None:
    refused(make_model(tmp_path / "bad.onnx", **kw), fragment)  # type: ignore[arg-type]


# ------------------------------------------------------------ metadata
@pytest.mark.parametrize(
    "metadata, producer, fragment",
    [
        ({"bgsdk.build": "{}"}, "x", "written by build-model (keys bgsdk.build) but has no 'bgsdk.contract'"),
        ({}, "bgsdk build-model", "producer 'bgsdk build-model'"),
        ({CONTRACT_KEY: "[1, 2]"}, "x", "not a JSON object"),
        ({CONTRACT_KEY: '{"width": 32}'}, "x", "not a valid contract"),
        ({CONTRACT_KEY: "[" * 100000}, "x", "not a valid contract"),
        ({CONTRACT_KEY: contract_json(height="64")}, "x", "height must be a positive integer"),
        ({CONTRACT_KEY: contract_json(height=-64)}, "x", "height must be a positive integer"),
        ({CONTRACT_KEY: contract_json(input_scale=0)}, "x", "input_scale must be a positive finite number"),
        ({CONTRACT_KEY: contract_json(input_scale="255")}, "x", "input_scale must be a positive finite number"),
        (
            {CONTRACT_KEY: contract_json().replace('"input_scale": 255.0', '"input_scale": Infinity')},
            "x",
            "input_scale",
        ),
        ({CONTRACT_KEY: contract_json(input_channels=["t", "r"])}, "x", "3 input and 3 output channels"),
        ({CONTRACT_KEY: contract_json(input_name="img")}, "x", "expected exactly one input named 'img'"),
        ({CONTRACT_KEY: contract_json(row_positions=[0, 30])}, "x", "inconsistent"),
        ({CONTRACT_KEY: contract_json(row_keep="nope")}, "x", "inconsistent"),
        ({CONTRACT_KEY: contract_json(col_keep=[[0, 31]])}, "x", "crop ranges"),
        ({CONTRACT_KEY: contract_json(format_version=99)}, "x", "newer than this bgsdk understands"),
        ({CONTRACT_KEY: Contract.from_tiling(tiling_for("strip")).to_json()}, "x", "contract says 976x176"),
    ],
)
def test_missing_or_contradictory_metadata(
    tmp_path: Path, metadata: dict[str, str], producer: str, fragment: str
) -> None:
    refused(make_model(tmp_path / "meta.onnx", metadata=metadata, producer=producer), fragment)


def test_model_without_any_bgsdk_metadata_still_runs(tmp_path: Path) -> None:
    """The documented fallback stays: a plain model (no bgsdk keys) with a fixed size is accepted."""
    seg = Segmenter(make_model(tmp_path / "plain.onnx", metadata={"note": "x"}))
    assert seg.contract is None and seg.image_size == (H, W)


# ------------------------------------------------------------ NaN / Inf output
@pytest.mark.parametrize("head", ["nan", "inf"])
def test_nan_or_inf_output_is_a_model_error(tmp_path: Path, head: str) -> None:
    p = make_model(tmp_path / f"{head}.onnx", head=head)
    seg = Segmenter(p)
    with pytest.raises(ModelError, match="NaN/Inf") as info:
        seg.run(strip())
    assert str(p) in str(info.value)
    with pytest.raises(ModelError, match="NaN/Inf"):  # batches too: a model failure always raises
        seg.run_batch([strip(1), strip(2)], batch_size=2)


# ------------------------------------------------------------ external data
def _with_external(tmp_path: Path, location: str, name: str = "evil.onnx") -> Path:
    """A model whose weight ``w`` is external, pointing at ``location`` (as written, unresolved)."""
    folder = tmp_path / "models"
    folder.mkdir(exist_ok=True)
    good = make_model(folder / "src.onnx", external="src.bin")
    m = onnx.load(str(good), load_external_data=False)
    for t in m.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = location
    p = folder / name
    onnx.save(m, str(p))
    return p


def test_external_data_inside_the_folder_loads(tmp_path: Path) -> None:
    p = make_model(tmp_path / "ext.onnx", external="weights.bin")
    assert set(external_data_locations(p.read_bytes())) == {"weights.bin"}  # w, one, axis0
    ref = Segmenter(make_model(tmp_path / "inline.onnx")).run(strip()).raw
    np.testing.assert_array_equal(Segmenter(p).run(strip()).raw, ref)
    sha = hashlib.sha256(p.read_bytes()).hexdigest()
    p.with_suffix(".json").write_text(json.dumps({"model_sha256": sha}))
    refused(p, "external files that its manifest does not cover", verify=True)


@pytest.mark.parametrize(
    "location, fragment",
    [
        ("../secret.bin", "goes up with '..'"),
        ("sub/../../secret.bin", "goes up with '..'"),
        ("ABSOLUTE", "is an absolute path"),
        ("..\\secret.bin", "Windows path"),
        ("C:secret.bin", "Windows path"),
        ("", "is empty"),
        ("link.bin", "outside the model's folder"),
        ("linkdir/secret.bin", "outside the model's folder"),
    ],
)
def test_external_data_outside_the_folder_is_refused(tmp_path: Path, location: str, fragment: str) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\x00" * 64)
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "link.bin").symlink_to(secret)
    (folder / "linkdir").symlink_to(tmp_path)
    p = _with_external(tmp_path, str(secret) if location == "ABSOLUTE" else location)
    refused(p, fragment)


def test_external_reference_is_refused_without_opening_the_target(tmp_path: Path) -> None:
    """The target is a FIFO: opening it for reading would block forever. The refusal must come
    at once, from path checks alone, before ONNX Runtime sees the file (in a subprocess, so a
    regression shows as a timeout, not a hung suite)."""
    os.mkfifo(tmp_path / "secret.bin")
    p = _with_external(tmp_path, "../secret.bin")
    code = textwrap.dedent(f"""
        import bgsdk
        try:
            bgsdk.Segmenter({str(p)!r})
        except bgsdk.ModelError as exc:
            print("REFUSED", exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "REFUSED" in out.stdout and "goes up with '..'" in out.stdout, out


def _mark_external(t: onnx.TensorProto, location: str) -> None:
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", "4")):
        e = t.external_data.add()
        e.key, e.value = k, v


def test_external_references_found_everywhere_onnx_looks(tmp_path: Path) -> None:
    """The wire walk finds every external tensor: initializers and Constant attributes inside an If
    branch (checked against the onnx package's own list), plus a function body's Constant, a
    sparse initializer and a training-info graph (which onnx's helper does not visit)."""
    big = numpy_helper.from_array(np.arange(16, dtype=np.float32), "big")
    const = helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.ones(8, np.float32), "kv"))
    branch = helper.make_graph([const], "then", [], [helper.make_tensor_value_info("k", TensorProto.FLOAT, [8])])
    kz = numpy_helper.from_array(np.zeros(8, np.float32), "kz")
    branch2 = helper.make_graph(
        [helper.make_node("Constant", [], ["k2"], value=kz)],
        "else",
        [],
        [helper.make_tensor_value_info("k2", TensorProto.FLOAT, [8])],
    )
    cond = helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch2)
    graph = helper.make_graph(
        [cond],
        "g",
        [helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8])],
        initializer=[big],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.save(
        model,
        str(tmp_path / "all.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=False,
        size_threshold=0,
        convert_attribute=True,
    )
    reloaded = onnx.load(str(tmp_path / "all.onnx"), load_external_data=False)
    expected = sorted(
        next(e.value for e in t.external_data if e.key == "location")
        for t in _get_all_tensors(reloaded)
        if uses_external_data(t)
    )
    assert len(expected) == 3  # big + the two branch constants
    assert sorted(external_data_locations((tmp_path / "all.onnx").read_bytes())) == expected

    fvalue = numpy_helper.from_array(np.full(8, 2, np.float32), "fkv")
    _mark_external(fvalue, "../func.bin")
    func = helper.make_function(
        "local",
        "addk",
        ["fx"],
        ["fy"],
        [helper.make_node("Constant", [], ["fk"], value=fvalue), helper.make_node("Add", ["fx", "fk"], ["fy"])],
        [helper.make_opsetid("", OPSET)],
    )
    reloaded.functions.append(func)
    sv = numpy_helper.from_array(np.ones(4, np.float32), "sv")
    _mark_external(sv, "/abs/sparse.bin")
    reloaded.graph.sparse_initializer.append(
        helper.make_sparse_tensor(sv, numpy_helper.from_array(np.arange(4, dtype=np.int64), "si"), [16])
    )
    tinit = numpy_helper.from_array(np.ones(2, np.float32), "ti")
    _mark_external(tinit, "train.bin")
    info = reloaded.training_info.add()
    info.initialization.CopyFrom(helper.make_graph([], "init", [], [], initializer=[tinit]))
    found = external_data_locations(reloaded.SerializeToString())
    assert sorted(found) == sorted(expected + ["../func.bin", "/abs/sparse.bin", "train.bin"])


# ------------------------------------------------------------ integrity (model.json)
@pytest.fixture()
def release(tmp_path: Path, good: Path) -> Path:
    """``model.onnx`` + ``model.json`` written by build-model's own artifact writer."""
    return write_artifacts(tmp_path / "model.onnx", good.read_bytes(), {"note": "test"}).model


def test_verify_accepts_the_built_pair(release: Path) -> None:
    r = Segmenter(release, verify=True).run(strip())
    assert np.isfinite(r.raw).all()


def test_tampered_weight_is_refused_only_with_verify(release: Path, good: Path) -> None:
    data = bytearray(release.read_bytes())
    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(1, 3, 3, 3)).astype(np.float32), "w").raw_data
    at = bytes(data).index(w)
    data[at + 3] ^= 0x40  # still a valid model, different numbers
    release.write_bytes(bytes(data))
    Segmenter(release)  # loads: nothing else would notice
    e = refused(release, "integrity check failed: sha256", verify=True)
    assert "model.json" in str(e)


@pytest.mark.parametrize(
    "manifest, fragment",
    [
        (None, "no manifest model.json"),
        ("not json", "not valid JSON"),
        ("[]", "not a JSON object"),
        ('{"model_sha256": "abc"}', "no valid 'model_sha256'"),
        ('{"model_sha256": "' + "0" * 64 + '"}', "integrity check failed: sha256"),
        ('{"model_sha256": "' + "0" * 64 + '", "model_bytes": 5}', "the file has"),
    ],
)
def test_bad_or_missing_manifest_is_refused(release: Path, manifest: str | None, fragment: str) -> None:
    mpath = release.with_suffix(".json")
    if manifest is None:
        mpath.unlink()
    else:
        mpath.write_text(manifest)
    refused(release, fragment, verify=True)


def test_inspect_verify_cli(release: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(capsys, "inspect", release, "--verify")
    assert code == 0, err
    assert "integrity: sha256 matches model.json" in out
    data = bytearray(release.read_bytes())
    data[-1] ^= 1  # last byte of the metadata
    release.write_bytes(bytes(data))
    code, out, err = _cli(capsys, "inspect", release, "--verify")
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bgsdk inspect: error: ") and str(release) in lines[0]
    assert "integrity check failed" in lines[0]


@pytest.mark.parametrize("kind", ["truncated", "nan", "contract", "external"])
def test_cli_run_on_hostile_model_is_one_line_exit_2(
    tmp_path: Path, good: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    if kind == "truncated":
        p = tmp_path / "t.onnx"
        p.write_bytes(good.read_bytes()[:300])
    elif kind == "nan":
        p = make_model(tmp_path / "nan.onnx", head="nan")
    elif kind == "contract":
        p = make_model(tmp_path / "c.onnx", metadata={CONTRACT_KEY: contract_json(input_scale=-1)})
    else:
        p = _with_external(tmp_path, "../x.bin")
    img = tmp_path / "img.npy"
    np.save(img, strip())
    code, _, err = _cli(capsys, "run", p, img, "--out", tmp_path / "out", "-q")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("bgsdk run: error: ") and str(p) in lines[0], err
    assert not any((tmp_path / "out").glob("*.tiff"))


def _cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    return invoke(bgsdk_main, capsys, *argv)
