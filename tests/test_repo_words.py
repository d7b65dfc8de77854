"""Project files describe the product, not how the work on it was organised.

Work periods ("the third session", "this session"), issue and pull-request numbers, scratch folders of
experiments (``runs/s12``) and references to a design document that is not in the repository ("SPEC
section 2") mean nothing to a reader of the repository. History belongs in ``CHANGELOG.md`` and the dated
notes of ``docs/experiments/``, which are exempt; every other tracked file is checked.

The rules are narrow on purpose: ONNX Runtime's sessions (``InferenceSession``, "session options",
``session.py``, "one session per actor") and a pytest "test session" are legitimate words, and so are a
URL of another project's issue tracker and a CSS colour such as ``#222``.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Where history is allowed, and this file (its examples spell out what the rules catch).
EXEMPT_FILES = frozenset({"CHANGELOG.md", "tests/test_repo_words.py"})
EXEMPT_DIRS = ("docs/experiments/",)

_ORDINAL = (
    r"(?:second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth"
    r"|\w+teenth|\w+tieth|\d+(?:st|nd|rd|th))"
)

#: rule name -> pattern; applied to every line of every checked file. "first session" is left out: ONNX
#: Runtime's first session in a process is a legitimate phrase.
RULES: dict[str, re.Pattern[str]] = {
    "a numbered work period": re.compile(rf"\b{_ORDINAL}[\s-]+sessions?\b", re.IGNORECASE),
    "a work period": re.compile(
        r"\b(?:this|previous|that|last|next|earlier|later)\s+sessions?\b|\beach\s+session's\b|\bsessions\s+ago\b",
        re.IGNORECASE,
    ),
    "an issue number": re.compile(
        r"\bissues?[\s-]*#?\d+\b|\b(?:PR|pull\s+request)\s*#\d+\b"
        r"|\b(?:see|fixes|fixed|closes|closed|refs?|per)\s+#\d+\b",
        re.IGNORECASE,
    ),
    "a scratch folder": re.compile(r"\bruns/s\d+"),
    "the reference document outside the repository": re.compile(r"\bSPEC\b"),
}
#: In Markdown a bare "#31" is an issue reference (headings need a space after the '#').
MARKDOWN_RULES: dict[str, re.Pattern[str]] = {
    "an issue number": re.compile(r"(?:^|[\s(\[,;])#\d+\b"),
}


def rule_hits(path: str, text: str) -> list[str]:
    """``path:line: rule: text`` for every line of ``text`` that breaks a rule."""
    rules = dict(RULES)
    if path.endswith(".md"):
        rules.update({f"{name} (Markdown)": rx for name, rx in MARKDOWN_RULES.items()})
    hits = []
    for number, line in enumerate(text.splitlines(), 1):
        for name, rx in rules.items():
            match = rx.search(line)
            if match:
                hits.append(f"{path}:{number}: {name}: {match.group(0)!r} in {line.strip()[:120]!r}")
    return hits


def checked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    names = [n for n in out.decode().split("\0") if n]
    return [n for n in names if n not in EXEMPT_FILES and not n.startswith(EXEMPT_DIRS)]


def test_tracked_files_name_no_work_periods_issues_scratch_folders_or_outside_documents():
    hits: list[str] = []
    files = checked_files()
    assert "README.md" in files and "sdk/bgsdk/__init__.py" in files  # git ls-files ran in this repository
    for name in files:
        path = ROOT / name
        if not path.is_file():  # deleted in the work tree, not yet in the index
            continue
        data = path.read_bytes()
        if b"\0" in data:  # binary
            continue
        hits += rule_hits(name, data.decode("utf-8", errors="replace"))
    assert not hits, "history words outside CHANGELOG.md and docs/experiments/:\n" + "\n".join(hits)


@pytest.mark.parametrize(
    "line",
    [
        "the fifteenth session made evaluation strips",
        "Seventh session: dead-leaves training backgrounds",
        "the sixth-session demo model",
        "those of the seventh to tenth sessions",
        "a 3rd session on the GPU",
        "measured in this session",
        "the previous session's runs",
        "each session's fresh-clone make demo",
        "measured sessions ago",
        "the ranges issue 10 names",
        "see Issue #31",
        "fixes #12",
        "merged in PR #7",
        "data linked from runs/s12",
        "runs/s13b/runs/robust_s0/best.pt",
        "the SPEC layout",
        "SPEC section 2's synthesis",
        "as SPEC §6 warned",
    ],
)
def test_rules_catch_history_words(line):
    assert rule_hits("x.py", line), line


@pytest.mark.parametrize(
    "line",
    [
        "sess = ort.InferenceSession(path, sess_options)",
        "with the default session options (memory pattern on)",
        "from .session import describe, open_session",
        "each actor opens one ONNX Runtime session and keeps it",
        "Shared fixtures, built once per test session.",
        'so.add_session_config_entry("session.intra_op.allow_spinning", "0")',
        "Ort::Session session{nullptr};",
        "os.killpg(pid, SIGKILL)  # its own session: the server and its children",
        "a session's providers",
        "The first session in a process pays ONNX Runtime's one-time set-up",
        "the issue-time model",
        "https://github.com/microsoft/onnxruntime/issues/21319",
        "body{color:#222;max-width:1400px}",
        'stroke="#444"',
        "runs/ablation/runs/v2_s0/best.pt",
        "for spec in requested:",
        "the specification of the I/O contract",
    ],
)
def test_rules_leave_product_words_alone(line):
    assert not rule_hits("x.py", line), line


def test_markdown_rule_catches_bare_issue_numbers_only_in_markdown():
    assert rule_hits("notes.md", "fixed in #31 last week")
    assert not rule_hits("notes.md", "## 31 heading")
    assert not rule_hits("x.py", "x = 1  # 31 is the count")
