"""Shared test fixtures."""
from __future__ import annotations

import os

# One OpenCV / BLAS thread per test process: tests must not depend on the machine's core count.
os.environ.setdefault("OMP_NUM_THREADS", "1")
