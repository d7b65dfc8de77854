"""Build-time operating-point calibration (bgbuild.calibrate_threshold) on real files, read back by the SDK."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx
import pytest

from bgbuild.calibrate_threshold import OperatingPointOptions, calibrate_model, set_operating_point_metadata
from bgbuild.errors import BuildError
from bgsdk import Segmenter
from bgsdk._dataset_layout import labelled_split
from tests.helpers.models import make_strip_model


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_strip_model(tmp_path_factory.mktemp("op") / "m.onnx")


def test_calibrates_on_valid_split_and_round_trips(model_path: Path, demo_root: Path, tmp_path):
    data = model_path.read_bytes()
    op = calibrate_model(data, OperatingPointOptions(data=demo_root), {})
    n_valid = len(labelled_split(demo_root, "valid"))
    assert op.calibrated and op.rule == "best_f1" and op.data["n_images"] == n_valid
    assert op.data["n_defect_images"] > 0 and op.metrics["pixel_f1"] is not None
    # Default data: the valid split of the checkpoint's training data set -> the same point.
    op2 = calibrate_model(data, OperatingPointOptions(), {"training_dataset_path": str(demo_root)})
    assert (op2.threshold, op2.min_area) == (op.threshold, op.min_area)
    m = onnx.load(model_path)
    set_operating_point_metadata(m, op)
    out = tmp_path / "cal.onnx"
    onnx.save(m, out)
    seg = Segmenter(out)
    assert seg.operating_point == op
    r = seg.run(sorted((demo_root / "valid" / "good").glob("*.tiff"))[0])
    assert (r.threshold, r.min_area) == (op.threshold, op.min_area)


def test_target_recall_and_false_alarm_rules(model_path: Path, demo_root: Path):
    data = model_path.read_bytes()
    rec = calibrate_model(data, OperatingPointOptions(data=demo_root, rule="target_recall", target=0.9), {})
    assert rec.rule == "target_recall" and rec.metrics["pixel_recall"] >= 0.9
    fa = calibrate_model(data, OperatingPointOptions(data=demo_root, rule="max_false_alarms", target=0.5), {})
    assert fa.rule == "max_false_alarms" and fa.metrics["false_alarms_per_image"] <= 0.5


def test_no_defective_images_falls_back_and_no_images_is_uncalibrated(model_path: Path, demo_root: Path, tmp_path):
    data = model_path.read_bytes()
    root = tmp_path / "train_only"
    shutil.copytree(demo_root / "train", root / "train")
    op = calibrate_model(data, OperatingPointOptions(), {"training_dataset_path": str(root)})
    assert op.calibrated and op.rule == "fallback_false_alarms" and "no defective" in op.note
    assert "train/good" in op.data["source"] and op.metrics["false_alarms"] == 0
    none = calibrate_model(data, OperatingPointOptions(), {})
    assert not none.calibrated and "no calibration data" in none.note
    with pytest.raises(BuildError, match="--calibrate-data"):
        calibrate_model(data, OperatingPointOptions(data=tmp_path / "missing"), {})


def test_calibration_image_of_another_size_is_one_line(model_path: Path, demo_root: Path, tmp_path):
    import numpy as np
    import tifffile

    root = tmp_path / "d"
    (root / "valid" / "good").mkdir(parents=True)
    tifffile.imwrite(root / "valid" / "good" / "wide.tiff", np.zeros((3, 976, 200), np.float32))
    with pytest.raises(BuildError) as info:
        calibrate_model(model_path.read_bytes(), OperatingPointOptions(data=root), {})
    msg = str(info.value)
    assert msg == (
        f"{root / 'valid' / 'good' / 'wide.tiff'}: calibration image is 976x200, the model is 976x176 "
        "(calibrate on images of the model's size, or build with --image-size)"
    )


def test_clean_single_die_templates_get_the_recipes_nuisances(model_path: Path, demo_root: Path, tmp_path):
    """Golden templates alone (target = both references) would calibrate on identical views: the training
    recipe's imaging nuisances make them differ first; a recipe without nuisances is a clear error."""
    import numpy as np
    from PIL import Image

    from bgsdk.io import read_image
    from bgtrain.recipe import get_recipe

    root = tmp_path / "templates"
    (root / "train" / "good").mkdir(parents=True)
    for p in sorted((demo_root / "train" / "good").glob("*.tiff"))[:3]:
        Image.fromarray(np.rint(read_image(p)[0]).astype(np.uint8), "L").save(root / "train" / "good" / f"{p.stem}.png")
    cfg = {"training_dataset_path": str(root), "recipe": get_recipe("robust").to_dict()}
    op = calibrate_model(model_path.read_bytes(), OperatingPointOptions(), cfg)
    assert op.rule == "fallback_false_alarms" and op.metrics["false_alarms"] == 0
    assert "3 single-die template(s) given the training recipe's imaging nuisances" in op.data["source"]
    assert op.threshold > 0.0
    with pytest.raises(BuildError, match="single-die template .* a recipe without imaging nuisances"):
        calibrate_model(
            model_path.read_bytes(), OperatingPointOptions(), {**cfg, "recipe": get_recipe("seed").to_dict()}
        )


def test_a_data_root_without_a_valid_split_calibrates_on_its_clean_training_images(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from bgbuild.calibrate_threshold import TRAIN_KIND, calibration_samples

    good = tmp_path / "train" / "good"
    good.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((64, 64), 40 * i, np.uint8), "L").save(good / f"t{i}.png")
    samples, said = calibration_samples(OperatingPointOptions(data=tmp_path), {})
    assert [s.path.name for s in samples] == ["t0.png", "t1.png", "t2.png"]
    assert all(s.kind == TRAIN_KIND and not s.defective for s in samples)
    assert "train/good" in said and "seen in training" not in said  # not the model's own training data
    # the training data set's own clean images are said to have been seen in training
    _, said_train = calibration_samples(OperatingPointOptions(), {"training_dataset_path": str(tmp_path)})
    assert "seen in training" in said_train
    (tmp_path / "valid").mkdir()  # a valid folder is used (and must hold images): an error, not a fallback
    with pytest.raises(BuildError, match="--calibrate-data"):
        calibration_samples(OperatingPointOptions(data=tmp_path), {})
