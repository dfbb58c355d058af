"""The synthetic people: built from the pinned photographs and their committed landmarks, and they
do not all look alike (identity spread, as `emogan synth-check` reports it)."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from pipeline import weights as W
from pipeline.errors import EmoganError
from pipeline.photos import PHOTO_LANDMARKS, photo_landmarks
from pipeline.synth import SynthParams, synth
from pipeline.synth_check import identity_spread
from conftest import params_of, project_params


@pytest.fixture(scope="module")
def people(tmp_path_factory) -> Path:
    p = params_of(SynthParams, "synth", subjects=12, frames=2, size=160, poses=("nothing",), expressions=("neutral",),
                  workers=2)
    return synth(p, tmp_path_factory.mktemp("people") / "people", progress=False)


def test_people_differ_in_shape_and_appearance(people: Path):
    res = identity_spread(people)
    assert res["people"] == 12
    # Measured on this set (seed 0, 160 px): shape mean 0.053, nearest-neighbour mean 0.027, min 0.017
    # inter-ocular distances; appearance mean 68, nearest 35, min 22 grey levels. The two-photograph
    # people before (commit c3f3270, same set): shape 0.031 / 0.011 / 0.0056, appearance 33 / 20 / 11.5.
    # The bounds sit between the two: a return to look-alike people fails.
    assert res["shape"]["min"] > 0.011 and res["shape"]["nearest_mean"] > 0.019, res["shape"]
    assert res["appearance"]["min"] > 16 and res["appearance"]["nearest_mean"] > 28, res["appearance"]


def test_people_recipes_cover_every_photograph_and_vary(people: Path):
    recipes = json.loads((people / "people.json").read_text())
    assert len(recipes) == 12
    photos = set(W.weights_params(project_params()).photos)
    assert {r["photo"] for r in recipes.values()} == photos
    assert len({tuple(r["skin_rgb"]) for r in recipes.values()}) >= 10
    assert any(r["glasses"] for r in recipes.values()) and not all(r["glasses"] for r in recipes.values())
    ages = [r["age"] for r in recipes.values()]
    assert min(ages) < 0.3 and max(ages) > 0.7


def test_committed_landmarks_match_the_pinned_photographs():
    stored = json.loads(PHOTO_LANDMARKS.read_text())
    pins = W.weights_params(project_params()).photos
    assert set(stored) == set(pins)
    for name, src in pins.items():
        assert stored[name]["sha256"] == src.sha256
        assert np.array(stored[name]["landmarks"]).shape == (468, 3)


def test_landmarks_of_another_photograph_are_refused(tmp_path: Path):
    with pytest.raises(EmoganError, match=r"no landmarks for photograph 'grace_hopper' with sha256 0+.*fit-landmarks"):
        photo_landmarks({"grace_hopper": "0" * 64})
    bad = tmp_path / "lm.json"
    bad.write_text("{not json")
    with pytest.raises(EmoganError, match=str(bad)):
        photo_landmarks({"grace_hopper": "0" * 64}, bad)


def make_sdist(folder: Path, member: str, payload: bytes) -> Path:
    """A minimal source distribution (.tar.gz) holding `member`, as PyPI's face_recognition sdist does."""
    path = folder / "face_recognition-1.3.0.tar.gz"
    with tarfile.open(path, "w:gz") as t:
        info = tarfile.TarInfo(member)
        info.size = len(payload)
        t.addfile(info, io.BytesIO(payload))
    return path


def test_photo_from_an_sdist_is_verified_and_written_whole(tmp_path: Path):
    payload = b"\xff\xd8\xff" + bytes(range(256)) * 8                  # stands for a JPEG
    member = "face_recognition-1.3.0/tests/test_images/obama.jpg"
    src = W.WeightSource(package="face_recognition", version="1.3.0", member=member, file="photos/obama.jpg",
                         sha256=hashlib.sha256(payload).hexdigest(), archive="sdist")
    dest = tmp_path / "w" / "photos" / "obama.jpg"
    assert W.fetch("photos", src, dest, wheel=make_sdist(tmp_path, member, payload)) is True
    assert dest.read_bytes() == payload
    bad = dataclasses.replace(src, sha256="1" * 64)
    other = tmp_path / "w2" / "o.jpg"
    with pytest.raises(EmoganError, match=r"sha256 .* expected 1+.*nothing written"):
        W.fetch("photos", bad, other, wheel=make_sdist(tmp_path, member, payload))
    assert not other.exists()
    with pytest.raises(EmoganError, match=r"(?s)has no .*obama.jpg: not the pinned source distribution.*--archive"):
        W.fetch("photos", dataclasses.replace(src, member="x/obama.jpg"), other,
                wheel=make_sdist(tmp_path, member, payload))


def test_missing_photograph_says_how_to_fetch_it(tmp_path: Path):
    from pipeline.photos import load_photos

    with pytest.raises(EmoganError, match=r"not found; run `emogan weights fetch photos`"):
        load_photos(paths={"obama": (tmp_path / "absent.jpg", "0" * 64)})
