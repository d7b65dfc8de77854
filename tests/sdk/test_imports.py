"""The runtime SDK must not drag in torch (or the CLI/build stack) -- checked in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers.models import SdkEnv

HEAVY = (
    "torch",
    "click",
    "tqdm",
    "onnx",
    "spox",
    "onnxsim",
    "onnxscript",
    "PIL",
    "matplotlib",
    "bgtrain",
    "bgbuild",
    "ray",
    "tritonclient",
    "pytriton",
    "grpc",
    "pyarrow",
)

SCRIPT = """
import json, sys
import numpy as np
import bgsdk
after_import = sorted(m for m in sys.modules if m.split('.')[0] in HEAVY)
seg = bgsdk.Segmenter(MODEL)
r = seg.run(STRIP)
seg.run(np.zeros((976, 176, 3), np.uint8))
list(seg.iter_folder(FOLDER, batch_size=2))
seg.run_batch([STRIP, STRIP + '.missing'])
loaded = sorted(m for m in sys.modules if m.split('.')[0] in HEAVY)
print(json.dumps({"after_import": after_import, "after_run": loaded, "score": r.score}))
"""


def test_import_and_run_leave_torch_out(sdk_env: SdkEnv):
    code = (
        f"HEAVY = {HEAVY!r}\nMODEL = {str(sdk_env.strip_model)!r}\nSTRIP = {str(sdk_env.strips[0])!r}\n"
        f"FOLDER = {str(sdk_env.root / 'strips')!r}\n" + SCRIPT
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["after_import"] == []
    assert report["after_run"] == []
    assert 0.0 < report["score"] <= 1.0


def test_import_bgsdk_does_not_load_onnxruntime_until_needed():
    code = (
        "import sys, bgsdk; print('onnxruntime' in sys.modules); bgsdk.Segmenter; print('onnxruntime' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "True"]
