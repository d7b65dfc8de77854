"""A small inspection data set the way a user brings one: grey 640x640 golden-template pairs, box annotations.

Layout (docs/data.md, "Your own data")::

    ROOT/train/good/board<k>.png                  single-channel golden templates (clean)
    ROOT/test/good/<key>_test.png + <key>_temp.png
    ROOT/test/open/<key>_test.png + <key>_temp.png    a trace cut: boxes in ground_truth/open/<key>.txt (DeepPCB)
    ROOT/test/short/<key>_test.png + <key>_temp.png   a bridge between traces: boxes in ROOT/annotations.json (COCO)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SIZE = 640


@dataclass(frozen=True)
class PcbData:
    root: Path
    boxes: dict[str, list[tuple[int, int, int, int]]]  # test stem -> (x1, y1, x2, y2) per defect


def board(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """A binary-looking board: horizontal and vertical traces and pads on a dark substrate."""
    img = np.full((size, size), 40, np.float32)
    for _ in range(14):
        y, w = int(rng.integers(10, size - 20)), int(rng.integers(4, 9))
        img[y : y + w, int(rng.integers(0, 200)) : int(rng.integers(440, size))] = 200
        x = int(rng.integers(10, size - 20))
        img[int(rng.integers(0, 200)) : int(rng.integers(440, size)), x : x + w] = 200
    for _ in range(20):
        y, x = (int(v) for v in rng.integers(20, size - 30, 2))
        img[y : y + 14, x : x + 14] = 220
    return img


def _noisy(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(img + rng.normal(0, 2.0, img.shape), 0, 255).round().astype(np.uint8)


def _save(path: Path, img: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img, "L").save(path)


def _defect(test: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """An open (a dark gap) or a short (a bright bar); returns its box (x1, y1, x2, y2)."""
    h, w = (int(v) for v in rng.integers(5, 10, 2))
    y, x = (int(v) for v in rng.integers(40, SIZE - 60, 2))
    test[y : y + h, x : x + w] = 0 if kind == "open" else 250  # >= 40 grey levels from any board value
    return x, y, x + w - 1, y + h - 1


def make_pcb_dataset(root: Path, n_train: int = 3, n_per_kind: int = 2, seed: int = 0) -> PcbData:
    """Write the data set; every test image differs from its template by noise and (defect kinds) 1-2 defects."""
    rng = np.random.default_rng(seed)
    for k in range(n_train):
        _save(root / "train" / "good" / f"board{k}.png", board(rng).astype(np.uint8))
    boxes: dict[str, list[tuple[int, int, int, int]]] = {}
    coco: dict[str, list[dict[str, object]]] = {
        "images": [],
        "annotations": [],
        "categories": [{"id": 1, "name": "short"}],
    }
    for kind in ("good", "open", "short"):
        for k in range(n_per_kind):
            key = f"{kind[0]}{k:04d}"
            template = board(rng)
            test = template.copy()
            found = [_defect(test, kind, rng) for _ in range(int(rng.integers(1, 3)))] if kind != "good" else []
            _save(root / "test" / kind / f"{key}_temp.png", _noisy(template, rng))
            _save(root / "test" / kind / f"{key}_test.png", _noisy(test, rng))
            boxes[f"{key}_test"] = found
            if kind == "open":  # DeepPCB text: x1,y1,x2,y2,type
                lines = "".join(f"{x1},{y1},{x2},{y2},1\n" for x1, y1, x2, y2 in found)
                (root / "ground_truth" / "open").mkdir(parents=True, exist_ok=True)
                (root / "ground_truth" / "open" / f"{key}.txt").write_text(lines)
            elif kind == "short":  # COCO: bbox = [x, y, w, h]
                image_id = len(coco["images"]) + 1
                coco["images"].append({"id": image_id, "file_name": f"test/short/{key}_test.png"})
                for x1, y1, x2, y2 in found:
                    coco["annotations"].append(
                        {
                            "id": len(coco["annotations"]) + 1,
                            "image_id": image_id,
                            "bbox": [x1, y1, x2 - x1 + 1, y2 - y1 + 1],
                            "category_id": 1,
                        }
                    )
    (root / "annotations.json").write_text(json.dumps(coco))
    return PcbData(root, boxes)
