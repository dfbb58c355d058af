"""The Makefile's set-up refuses a Python other than 3.11 with a message that says what to do."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from conftest import ROOT


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_refuses_another_python_before_creating_anything(tmp_path):
    fake = tmp_path / "python3.12"
    fake.write_text('#!/bin/sh\nif [ "$1" = --version ]; then echo "Python 3.12.3"; exit 0; fi\nexit 1\n')
    fake.chmod(0o755)
    venv = tmp_path / "venv"
    r = subprocess.run(["make", "-C", str(ROOT), "venv", f"PYTHON={fake}", f"VENV={venv}"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "needs Python 3.11" in r.stdout + r.stderr
    assert "Python 3.12.3" in r.stdout + r.stderr
    assert not venv.exists()
