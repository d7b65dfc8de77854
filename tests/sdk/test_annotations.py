"""Box readers (text, DeepPCB commas, COCO), box <-> mask, and the data set layout with any folder names."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from bgsdk._dataset_layout import labelled_split, match_refs, pair_folder, sample_image, sample_mask
from bgsdk.annotations import Box, boxes_to_mask, mask_to_boxes, read_box_file, read_coco
from bgsdk.errors import InputError


def test_box_file_spaces_commas_classes(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("# x1 y1 x2 y2 class\n10 20 30 40 open\n\n1,2,3,4,2\n5.5 6 7 8\n")
    assert read_box_file(p) == [Box(10, 20, 30, 40, "open"), Box(1, 2, 3, 4, "2"), Box(5.5, 6, 7, 8, "")]
    (tmp_path / "empty.txt").write_text("")
    assert read_box_file(tmp_path / "empty.txt") == []


@pytest.mark.parametrize(
    "line,match",
    [
        ("1 2 3", r"line 1: expected 'x1 y1 x2 y2 \[class\]'"),
        ("a b c d", "line 1: box corners must be numbers"),
        ("5 5 4 9", r"line 1: box has x2 < x1"),
        ("1 2 inf 4", "finite"),
    ],
)
def test_box_file_errors_name_the_line(tmp_path, line, match):
    p = tmp_path / "bad.txt"
    p.write_text(line + "\n")
    with pytest.raises(InputError, match=match) as info:
        read_box_file(p)
    assert str(p) in str(info.value) and "\n" not in str(info.value)


def test_coco(tmp_path):
    coco = {
        "images": [{"id": 1, "file_name": "test/open/a.png"}, {"id": 2, "file_name": "b.png"}],
        "annotations": [
            {"id": 1, "image_id": 1, "bbox": [10, 20, 5, 3], "category_id": 7},
            {"id": 2, "image_id": 1, "bbox": [0, 0, 1, 1], "category_id": 8},
        ],
        "categories": [{"id": 7, "name": "open"}, {"id": 8, "name": "short"}],
    }
    p = tmp_path / "annotations.json"
    p.write_text(json.dumps(coco))
    idx = read_coco(p)
    assert idx.lookup("test/open/a.png") == [Box(10, 20, 14, 22, "open"), Box(0, 0, 0, 0, "short")]
    assert idx.lookup("elsewhere/a.png") == idx.lookup("test/open/a.png")  # by base name
    assert idx.lookup("b.png") == [] and idx.lookup("c.png") is None
    coco["annotations"][0]["bbox"] = [1, 2, 0, 3]
    p.write_text(json.dumps(coco))
    with pytest.raises(InputError, match=r"annotations\[0\]: bbox width and height must be > 0"):
        read_coco(p)
    p.write_text(json.dumps({"images": [], "annotations": [{"image_id": 3, "bbox": [1, 1, 1, 1]}]}))
    with pytest.raises(InputError, match=r"annotations\[0\]: image_id 3 is not among the images"):
        read_coco(p)


def test_boxes_and_masks_round_trip():
    mask = np.zeros((20, 30), bool)
    mask[2:5, 3:9] = True
    mask[10, 20] = True
    boxes = mask_to_boxes(mask, "k")
    assert boxes == [Box(3, 2, 8, 4, "k"), Box(20, 10, 20, 10, "k")]
    np.testing.assert_array_equal(boxes_to_mask(boxes, mask.shape), mask)
    assert boxes[0].area == 18 == mask[2:5, 3:9].sum()
    assert boxes_to_mask([Box(-5, -5, 1, 1)], (4, 4)).sum() == 4  # clipped to the image


def _grey(path, value, hw=(64, 64)):
    Image.fromarray(np.full(hw, value, np.uint8), "L").save(path)
    return path


def test_pairs_and_matching_rules(tmp_path):
    d = tmp_path / "f"
    d.mkdir()
    t1, r1 = _grey(d / "00041000_test.jpg", 10), _grey(d / "00041000_temp.jpg", 20)
    t2, r2 = _grey(d / "b_test.png", 30), _grey(d / "b_test_template.png", 40)
    assert pair_folder(sorted(d.iterdir())) == [(t1, (r1,)), (t2, (r2,))]
    # separate folders: exact stem first, then the suffix rule
    refs = tmp_path / "refs"
    refs.mkdir()
    e1, e2 = _grey(refs / "00041000_test.jpg", 1), _grey(refs / "b_golden.png", 2)
    matched, unused = match_refs([t1, t2, d / "zzz.png"], [e1, e2, refs / "other.png"])
    assert matched == [e1, e2, None] and unused == [refs / "other.png"]
    assert match_refs([d / "b.png"], [refs / "b.tiff", e2])[0] == [refs / "b.tiff"]  # the exact stem wins
    with pytest.raises(InputError, match=r"2 templates match it \(b.tiff, b.png\)"):
        match_refs([d / "b.png"], [refs / "b.tiff", refs / "b.png"])
    _grey(d / "c_test.png", 1)
    with pytest.raises(InputError, match=r"1 of 3 test image\(s\) have no template beside them \(e.g. c_test.png"):
        pair_folder(sorted(d.iterdir()))


def _split(root, kinds, annotate):
    """test/good + test/<kind> with 640x640-less tiny grey pairs; ``annotate(kind, key)`` writes the annotation."""
    good = root / "test" / "good"
    good.mkdir(parents=True)
    _grey(good / "g1_test.png", 50)
    _grey(good / "g1_temp.png", 50)
    for kind in kinds:
        d = root / "test" / kind
        d.mkdir(parents=True)
        for k in range(2):
            _grey(d / f"{kind}{k}_test.png", 90)
            _grey(d / f"{kind}{k}_temp.png", 50)
            annotate(kind, f"{kind}{k}")


def test_any_folder_names_with_boxes_masks_and_coco(tmp_path):
    root = tmp_path / "data"
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "spur"}]}

    def annotate(kind, key):
        gt = root / "ground_truth" / kind
        gt.mkdir(parents=True, exist_ok=True)
        if kind == "open":  # DeepPCB-style text, in ground_truth/<kind>/
            (gt / f"{key}.txt").write_text("4,5,9,12,1\n")
        elif kind == "short":  # a mask
            m = np.zeros((64, 64), np.uint8)
            m[20:24, 30:33] = 255
            Image.fromarray(m).save(gt / f"{key}_test_mask.png")
        else:  # COCO
            i = len(coco["images"]) + 1
            coco["images"].append({"id": i, "file_name": f"test/{kind}/{key}_test.png"})
            coco["annotations"].append({"id": i, "image_id": i, "bbox": [1, 2, 3, 4], "category_id": 1})

    _split(root, ["open", "short", "mousebite"], annotate)
    (root / "annotations.json").write_text(json.dumps(coco))
    samples = labelled_split(root, "test")
    assert [(s.path.name, s.kind, s.defective) for s in samples] == [
        ("g1_test.png", "good", False),
        ("mousebite0_test.png", "mousebite", True),
        ("mousebite1_test.png", "mousebite", True),
        ("open0_test.png", "open", True),
        ("open1_test.png", "open", True),
        ("short0_test.png", "short", True),
        ("short1_test.png", "short", True),
    ]
    by = {s.path.stem: s for s in samples}
    assert by["open0_test"].boxes == (Box(4, 5, 9, 12, "1"),) and by["open0_test"].mask_path is None
    assert by["mousebite1_test"].boxes == (Box(1, 2, 3, 5, "spur"),)
    assert by["short0_test"].mask_path.name == "short0_test_mask.png" and by["short0_test"].boxes is None
    assert by["open0_test"].refs == (root / "test" / "open" / "open0_temp.png",)
    img = sample_image(by["open0_test"])
    assert img.shape == (3, 64, 64) and img[0].max() == 90 and img[1].max() == img[2].max() == 50
    assert sample_mask(by["open0_test"], (64, 64)).sum() == 6 * 8
    assert sample_mask(by["short0_test"], (64, 64)).sum() == 12
    assert sample_mask(by["g1_test"], (64, 64)) is None
    with pytest.raises(InputError, match="mask is 64x64, its image short0_test.png is 64x60"):
        sample_mask(by["short0_test"], (64, 60))


def test_a_folder_without_any_annotation_says_why(tmp_path):
    root = tmp_path / "data"
    _split(root, ["scratch"], lambda kind, key: None)
    with pytest.raises(InputError) as info:
        labelled_split(root, "test")
    msg = str(info.value)
    assert msg.startswith(str(root / "test" / "scratch") + ": 2 image(s), no masks in ground_truth/scratch/ nor boxes")
    assert "none of its defects could be scored" in msg and "\n" not in msg


def test_one_unannotated_defect_image_is_named(tmp_path):
    root = tmp_path / "data"

    def annotate(kind, key):
        if key.endswith("0"):
            (root / "test" / kind / f"{key}.txt").write_text("1 1 2 2\n")  # beside the image, stem without _test

    _split(root, ["scratch"], annotate)
    with pytest.raises(InputError, match=r"scratch1_test.png: defect image has no annotation \(1 of 2 in scratch/\)"):
        labelled_split(root, "test")


def test_spec_layout_still_reads(tmp_path):
    """The synthetic data sets' bright_spots with masks is one kind among others."""
    root = tmp_path / "d"
    for sub in ("test/good", "test/bright_spots", "ground_truth/bright_spots"):
        (root / sub).mkdir(parents=True)
    tifffile.imwrite(root / "test/good/a.tiff", np.zeros((3, 8, 8), np.float32))
    tifffile.imwrite(root / "test/bright_spots/b.tiff", np.zeros((3, 8, 8), np.float32))
    Image.fromarray(np.eye(8, dtype=np.uint8) * 255).save(root / "ground_truth/bright_spots/b.png")
    s = labelled_split(root, "test")
    assert [(x.path.name, x.defective, x.mask_path.name if x.mask_path else None) for x in s] == [
        ("a.tiff", False, None),
        ("b.tiff", True, "b.png"),
    ]
