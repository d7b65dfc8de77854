"""Long fuzzing runs of the SDK's input paths: ``make fuzz`` (or ``python tests/fuzz/run.py``).

Engines:

* ``atheris`` (coverage-guided libFuzzer for Python; ``pip install -e '.[fuzz]'``,
  wheels for CPython 3.11 on x86-64 Linux): each target runs in its own process
  with ``-runs=N -timeout=30 -rss_limit_mb=2048``; a crash, hang or memory blow-up
  ends the run with the offending input saved as ``crash-*``/``timeout-*``/``oom-*``.
* ``hypothesis`` (fallback where atheris does not install): the same targets fed
  ``st.binary()``; each input gets a 30 s alarm and an RSS check (2 GiB).

``auto`` picks atheris when it imports. Every target's property: the outcome is a
result or a ``bgsdk`` error (:mod:`tests.fuzz.targets`). Counts per outcome are
printed at the end and written to ``OUT/<target>.json``.

    python tests/fuzz/run.py --runs 10000                  # every target, 10,000 inputs each
    python tests/fuzz/run.py --target read_image --engine hypothesis --runs 500
    python tests/fuzz/run.py --replay crash-abc123 --target read_image
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

TIMEOUT_S = 30
RSS_LIMIT_MB = 2048


def _make_call(target: str, work: Path) -> Callable[[bytes], str]:
    from tests.fuzz.targets import TARGETS, small_model

    fn = TARGETS[target]
    if target == "read_image":
        return lambda data: fn(data, work)
    if target == "segmenter":
        from bgsdk import Segmenter

        seg = Segmenter(small_model(work / "fuzz_model.onnx"), threads=1)
        return lambda data: fn(data, seg)
    return fn


def _seeds(target: str, corpus: Path) -> None:
    """Valid inputs to start from (atheris mutates them)."""
    from tests.fuzz.targets import Bytes  # noqa: F401  (the decisions below follow its layout)

    corpus.mkdir(parents=True, exist_ok=True)
    for i in range(16):
        (corpus / f"seed{i}").write_bytes(bytes([i % 7, 0, 1 + i % 3, 0, i, 0, i * 7 % 256, 0]) * 8)


def run_atheris(target: str, runs: int, out: Path) -> dict[str, Any]:
    """This process becomes the fuzzer (atheris.Setup/Fuzz never return)."""
    import atheris

    # Coverage feedback needs the code under test instrumented as it is imported: bgsdk and the TIFF parser
    # (tifffile is pure Python); this runs before anything imports them (see main()).
    with atheris.instrument_imports(include=["bgsdk", "tifffile", "tests.fuzz.targets"]):
        import tifffile  # noqa: F401

        import bgsdk._sanity  # noqa: F401
        import bgsdk._segmenter  # noqa: F401
        import bgsdk.io  # noqa: F401
        import tests.fuzz.targets  # noqa: F401
    work = Path(tempfile.mkdtemp(prefix="bgsdk-fuzz-"))
    call = _make_call(target, work)
    counts: Counter[str] = Counter()
    state = out / f"{target}.json"

    def one(data: bytes) -> None:
        counts[call(data)] += 1
        n = sum(counts.values())
        if n % 50 == 0 or n == runs:
            state.write_text(json.dumps({"target": target, "engine": "atheris", "inputs": n, "outcomes": counts}))

    corpus = out / f"corpus-{target}"
    _seeds(target, corpus)
    atheris.Setup(
        [
            sys.argv[0],
            f"-runs={runs}",
            f"-timeout={TIMEOUT_S}",
            f"-rss_limit_mb={RSS_LIMIT_MB}",
            f"-artifact_prefix={out}/",
            str(corpus),
        ],
        one,
    )
    atheris.Fuzz()
    return {}


def run_hypothesis(target: str, runs: int, out: Path) -> dict[str, Any]:
    import psutil
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests.fuzz.targets import ALLOWED

    work = Path(tempfile.mkdtemp(prefix="bgsdk-fuzz-"))
    call = _make_call(target, work)
    counts: Counter[str] = Counter()
    proc = psutil.Process()

    def alarm(*_: object) -> None:
        raise TimeoutError(f"one input took over {TIMEOUT_S} s")

    signal.signal(signal.SIGALRM, alarm)

    @settings(max_examples=runs, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.binary(max_size=2048))
    def check(data: bytes) -> None:
        signal.alarm(TIMEOUT_S)
        try:
            outcome = call(data)
        finally:
            signal.alarm(0)
        assert outcome in ALLOWED, outcome
        rss = proc.memory_info().rss / 2**20
        assert rss < RSS_LIMIT_MB, f"RSS {rss:.0f} MB"
        counts[outcome] += 1

    check()
    result = {"target": target, "engine": "hypothesis", "inputs": sum(counts.values()), "outcomes": counts}
    (out / f"{target}.json").write_text(json.dumps(result))
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10000, help="inputs per target [10000]")
    ap.add_argument("--target", default="all", help="read_image, to_chw, segmenter or all")
    ap.add_argument("--engine", default="auto", choices=["auto", "atheris", "hypothesis"])
    ap.add_argument("--out", type=Path, default=ROOT / "fuzz_out", help="counts, corpus and crash files")
    ap.add_argument(
        "--replay", type=Path, default=None, help="run one saved input through --target and show the outcome"
    )
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:  # one atheris target in this process: instrument before anything imports bgsdk
        args.out.mkdir(parents=True, exist_ok=True)
        run_atheris(args.target, args.runs, args.out)
        return 0
    from tests.fuzz.targets import TARGETS

    targets = list(TARGETS) if args.target == "all" else [args.target]
    args.out.mkdir(parents=True, exist_ok=True)
    if args.replay is not None:
        call = _make_call(targets[0], Path(tempfile.mkdtemp(prefix="bgsdk-fuzz-")))
        print(call(args.replay.read_bytes()))
        return 0
    engine = args.engine
    if engine == "auto":
        try:
            import atheris  # noqa: F401

            engine = "atheris"
        except ImportError:
            print("atheris is not installed (pip install -e '.[fuzz]'); using hypothesis", file=sys.stderr)
            engine = "hypothesis"
    failed = []
    for target in targets:
        t0 = time.monotonic()
        if engine == "atheris":
            cmd = [
                sys.executable,
                __file__,
                "--child",
                "--engine",
                "atheris",
                "--target",
                target,
                "--runs",
                str(args.runs),
                "--out",
                str(args.out),
            ]
            proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"})
            ok = proc.returncode == 0
            result = (
                json.loads((args.out / f"{target}.json").read_text()) if (args.out / f"{target}.json").exists() else {}
            )
        else:
            try:
                result, ok = run_hypothesis(target, args.runs, args.out), True
            except Exception as exc:  # the property failed: report, go on with the next target
                print(f"{target}: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
                result, ok = {}, False
        dt = time.monotonic() - t0
        print(
            f"fuzz {target} [{engine}]: {result.get('inputs', '?')} inputs in {dt:.0f} s, outcomes "
            f"{dict(result.get('outcomes', {}))}, {'ok' if ok else 'FAILED (see ' + str(args.out) + ')'}"
        )
        if not ok:
            failed.append(target)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
