"""Triton model repository (`bgsdk export-triton`, `build-model --triton-repo`), checked with Triton's own
``model_config`` protobuf (shipped in tritonclient), not by string comparison."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest

from bgsdk.contract import CONTRACT_KEY
from bgsdk.errors import ModelError
from bgsdk.serving.triton_repo import TritonRepoOptions, export_triton
from tests.helpers.cli import invoke
from tests.helpers.models import make_full_model, make_patch_model, strip_contract_json
from tests.helpers.scale import ScaleEnv, scale_env  # noqa: F401

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="needs bgsdk[triton]")
text_format = pytest.importorskip("google.protobuf.text_format")

# Metadata with everything a hand-written text format could get wrong: quotes, backslashes, newlines, non-ASCII.
TRICKY = {"bgsdk.note": 'say "hi"\\n\n\ttab, ünïcode, 漢字, \x01', "other.key": "not bgsdk: not copied"}


def parse(model_dir: Path):
    cfg = model_config_pb2.ModelConfig()
    text_format.Parse((model_dir / "config.pbtxt").read_text(encoding="utf-8"), cfg)
    return cfg


def metadata(path: Path) -> dict[str, str]:
    return dict(ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map)


@pytest.fixture(scope="module")
def strip_model(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    return make_full_model(root / "m.onnx", contract_json=strip_contract_json(), extra_metadata=TRICKY)


def test_repository_config_parses_with_tritons_protobuf(strip_model: Path, tmp_path: Path):
    opts = TritonRepoOptions(
        name="defects", max_batch_size=16, queue_delay_us=250, cpu_instances=2, gpu_instances=1, gpus=(0, 1), threads=3
    )
    model_dir = export_triton(strip_model, tmp_path / "repo", opts)
    assert model_dir == tmp_path / "repo" / "defects"
    assert (model_dir / "1" / "model.onnx").read_bytes() == strip_model.read_bytes()
    cfg = parse(model_dir)
    T = model_config_pb2
    assert (cfg.name, cfg.platform, cfg.max_batch_size) == ("defects", "onnxruntime_onnx", 16)
    assert [(i.name, i.data_type, list(i.dims)) for i in cfg.input] == [("input", T.TYPE_FP32, [3, 976, 176])]
    assert [(o.name, o.data_type, list(o.dims)) for o in cfg.output] == [("output", T.TYPE_FP32, [3, 976, 176])]
    assert cfg.HasField("dynamic_batching") and cfg.dynamic_batching.max_queue_delay_microseconds == 250
    groups = [(g.kind, g.count, list(g.gpus)) for g in cfg.instance_group]
    assert groups == [(T.ModelInstanceGroup.KIND_CPU, 2, []), (T.ModelInstanceGroup.KIND_GPU, 1, [0, 1])]
    params = {k: v.string_value for k, v in cfg.parameters.items()}
    meta = metadata(strip_model)
    bgsdk_meta = {k: v for k, v in meta.items() if k.startswith("bgsdk.")}
    assert {k: params[k] for k in bgsdk_meta} == bgsdk_meta  # exact round trip, escapes included
    assert params[CONTRACT_KEY] == strip_contract_json() and params["bgsdk.note"] == TRICKY["bgsdk.note"]
    assert "other.key" not in params
    assert (params["intra_op_thread_count"], params["inter_op_thread_count"]) == ("3", "1")


def test_defaults_and_no_dynamic_batching(strip_model: Path, tmp_path: Path):
    cfg = parse(export_triton(strip_model, tmp_path, TritonRepoOptions()))
    assert cfg.name == "bgsdk" and cfg.max_batch_size == 8 and cfg.dynamic_batching.max_queue_delay_microseconds == 500
    assert [(g.kind, g.count) for g in cfg.instance_group] == [(model_config_pb2.ModelInstanceGroup.KIND_CPU, 1)]
    assert "intra_op_thread_count" not in cfg.parameters
    cfg = parse(export_triton(strip_model, tmp_path, TritonRepoOptions(queue_delay_us=None)))
    assert not cfg.HasField("dynamic_batching")


def test_models_that_cannot_serve_are_refused_and_nothing_is_written(tmp_path: Path):
    fixed = make_full_model(tmp_path / "fixed.onnx", batch=2, contract_json=strip_contract_json())
    with pytest.raises(ModelError, match="fixed batch size 2"):
        export_triton(fixed, tmp_path / "repo")
    with pytest.raises(ModelError, match="patch model"):
        export_triton(make_patch_model(tmp_path / "patch.onnx"), tmp_path / "repo")
    with pytest.raises(ModelError, match="not found"):
        export_triton(tmp_path / "missing.onnx", tmp_path / "repo")
    assert not (tmp_path / "repo").exists()
    with pytest.raises(ValueError, match="model name"):
        export_triton(fixed, tmp_path / "repo", TritonRepoOptions(name="a/b"))


def test_export_triton_cli(strip_model: Path, tmp_path: Path, capsys):
    from bgsdk.cli import main

    code, out, _ = invoke(
        main,
        capsys,
        "export-triton",
        strip_model,
        tmp_path,
        "--name",
        "m1",
        "--no-dynamic-batching",
        "--cpu-instances",
        "0",
        "--gpu-instances",
        "2",
        "-q",
    )
    assert code == 0 and out == ""
    cfg = parse(tmp_path / "m1")
    assert not cfg.HasField("dynamic_batching")
    assert [(g.kind, g.count) for g in cfg.instance_group] == [(model_config_pb2.ModelInstanceGroup.KIND_GPU, 2)]
    code, _, err = invoke(main, capsys, "export-triton", strip_model, tmp_path, "--cpu-instances", "0")
    assert code == 2 and err.strip() == "bgsdk export-triton: error: need at least one CPU or GPU instance"
    code, _, err = invoke(main, capsys, "export-triton", tmp_path / "nope.onnx", tmp_path)
    assert code == 2 and "model file not found" in err and len(err.strip().splitlines()) == 1
    # The grammar of every command: MODEL positional, the repository folder with -o.
    code, _, err = invoke(main, capsys, "export-triton", strip_model, "-o", tmp_path / "new", "--name", "m2", "-q")
    assert code == 0, err
    assert (tmp_path / "new" / "m2" / "1" / "model.onnx").read_bytes() == strip_model.read_bytes()
    code, _, err = invoke(main, capsys, "export-triton", strip_model)
    assert (
        code == 2
        and err.strip() == "bgsdk export-triton: error: missing -o/--out: the model repository folder to write"
    )


def test_build_model_writes_the_repository(scale_env: ScaleEnv, tmp_path: Path, capsys):  # noqa: F811
    from bgbuild.cli import main

    ckpt = scale_env.model.parent / "tiny.pt"
    code, _, err = invoke(
        main, capsys, ckpt, "-o", tmp_path / "m.onnx", "--verify-images", "1", "--triton-repo", tmp_path / "repo"
    )
    assert code == 0, err
    cfg = parse(tmp_path / "repo" / "bgsdk")
    assert cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size == 8
    assert (tmp_path / "repo" / "bgsdk" / "1" / "model.onnx").read_bytes() == (tmp_path / "m.onnx").read_bytes()
    assert cfg.parameters[CONTRACT_KEY].string_value == metadata(tmp_path / "m.onnx")[CONTRACT_KEY]
