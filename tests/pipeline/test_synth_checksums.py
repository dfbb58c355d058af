"""Machine-independent synth: a small set renders to the committed checksums, also with the
CPU's SIMD paths switched off (another CPU's OpenCV, numpy and OpenBLAS kernels, emulated).

After an intended change of the rendering, rewrite the checksums and commit them:
    PYTHONPATH=$PWD .venv/bin/python tests/pipeline/test_synth_checksums.py --update
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKSUMS = Path(__file__).with_name("synth_checksums.json")
# Two people (two photographs), a still and a turning head, a closed and an open mouth; small frames;
# every other value from params.yaml `synth:` (a change there that moves the pixels needs new checksums).
SMALL = dict(subjects=2, frames=3, size=128, poses=("nothing", "diagonal"), expressions=("neutral", "surprise"),
             workers=1)
# Run-time switches that make OpenCV, numpy and OpenBLAS take other code paths, as on another CPU.
OTHER_CPU = {"OPENCV_CPU_DISABLE": "AVX512_SKX,AVX2,FMA3,AVX,POPCNT,SSE4_2,SSE4_1,SSSE3",
             "NPY_DISABLE_CPU_FEATURES": "AVX512F AVX512_SKX AVX2 FMA3 AVX F16C",
             "OPENBLAS_CORETYPE": "Prescott"}


def render_digests(out: Path) -> dict[str, str]:
    """Render SMALL into `out` and return sha256 per output file (relative path)."""
    from conftest import params_of
    from pipeline.synth import SynthParams, synth

    synth(params_of(SynthParams, "synth", **SMALL), out, overwrite=True, progress=False)
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and p.name != "contact_sheet.png"}


def _render_in_subprocess(out: Path, env_extra: dict[str, str]) -> dict[str, str]:
    code = ("import json, sys; from pathlib import Path; sys.path[:0] = [sys.argv[2], sys.argv[3]];"
            "from test_synth_checksums import render_digests;"
            "print(json.dumps(render_digests(Path(sys.argv[1]))))")
    env = {**os.environ, **env_extra, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    r = subprocess.run([sys.executable, "-c", code, str(out), str(Path(__file__).parent), str(ROOT / "tests")], capture_output=True,
                       text=True, cwd=ROOT, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_small_set_matches_committed_checksums(tmp_path: Path):
    expected = json.loads(CHECKSUMS.read_text())
    got = render_digests(tmp_path / "small")
    differ = sorted(k for k in set(expected) | set(got) if expected.get(k) != got.get(k))
    assert not differ, f"{len(differ)} files differ from {CHECKSUMS.name}, e.g. {differ[:5]}"


@pytest.mark.parametrize("switch", sorted(OTHER_CPU))
def test_other_cpu_code_paths_give_the_same_bytes(tmp_path: Path, switch: str):
    expected = json.loads(CHECKSUMS.read_text())
    got = _render_in_subprocess(tmp_path / "small", {switch: OTHER_CPU[switch]})
    differ = sorted(k for k in set(expected) | set(got) if expected.get(k) != got.get(k))
    assert not differ, f"with {switch} set, {len(differ)} files differ, e.g. {differ[:5]}"


if __name__ == "__main__":
    if "--update" in sys.argv:
        import tempfile

        os.chdir(ROOT)
        sys.path.insert(0, str(ROOT / "tests"))
        with tempfile.TemporaryDirectory() as tmp:
            CHECKSUMS.write_text(json.dumps(render_digests(Path(tmp) / "small"), indent=1, sort_keys=True) + "\n")
        print(f"wrote {CHECKSUMS}")
