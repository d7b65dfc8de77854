"""Shared test builders (imported as ``tests.helpers.<module>``; fixtures live in tests/conftest.py).

- :mod:`tests.helpers.cli`: run a CLI's ``main(argv)`` in-process.
- :mod:`tests.helpers.models`: small contract-conforming (and broken) ONNX models, test strips.
- :mod:`tests.helpers.build`: a tiny UNet, the index patch model and the independent stitching reference.
- :mod:`tests.helpers.heatmaps`: comparing heatmaps of two implementations (thresholds with a margin).
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
