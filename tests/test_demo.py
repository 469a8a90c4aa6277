"""`make demo` is what a new user runs first: it must work, and say what happened."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parent.parent / "scripts" / "demo.py"


def test_demo_delivers_then_withholds(tmp_path):
    result = subprocess.run(
        [sys.executable, str(DEMO), "--dir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "cvsmsg: delivered to alice@localhost: available" in out
    assert "Triggered edit watch on" in out
    assert "cvsmsg: withheld from alice@localhost: dnd (resource desk)" in out
    assert "alice received 0 new message(s)" in out
    assert "== Done: delivered when available, withheld in dnd" in out
    assert "\033[" not in out  # no terminal escapes when not on a terminal
