"""#16 defect 7: reuse checks the outputs' content (sizes recorded in the marker), not only their count:
a truncated crop counted as done forever (and flow then skipped that sequence)."""
from __future__ import annotations

from pathlib import Path

from face_images import astronaut, grace_hopper, moving, write_rgb
from pipeline.adapters.common import ManifestParams
from pipeline.augment import AugmentParams, augment_dataset
from pipeline.crop import CropParams, crop_dataset, read_rgb
from pipeline.manifest import MANIFEST_COLUMNS, build_manifest, write_csv
from conftest import params_of

SMALL = params_of(CropParams, "crop", size=48, workers=1)


def _dataset(tmp_path: Path, cams: tuple[str, ...]) -> Path:
    root = tmp_path / "ds"
    for k in range(2):
        face = astronaut() if k == 0 else grace_hopper()
        for cam in cams:
            for i, f in enumerate(moving(face, 3)):
                write_rgb(root / cam / "S01" / f"{k:03d}" / f"img_{i + 1:03d}.png", f)
    (root / "labels.csv").write_text("")
    if len(cams) == 1:
        (root / "cam2").mkdir()
    rows = build_manifest(root, "emotiongan", "ds", params_of(ManifestParams, "manifest", labels=""), root="ds")
    write_csv(tmp_path / "ds.csv", MANIFEST_COLUMNS, rows)
    return tmp_path / "ds.csv"


def test_a_truncated_crop_is_redone_on_the_next_run(tmp_path):
    manifest = _dataset(tmp_path, ("cam1", "cam2"))
    out = tmp_path / "crops"
    assert crop_dataset(manifest, out, SMALL, progress=False) == {"cropped": 2, "reused": 0, "error": 0}
    victim = out / "S01" / "001" / "cam2" / "img_002.png"
    good = victim.read_bytes()
    victim.write_bytes(good[:40])  # a full disk or a killed copy left it short
    assert crop_dataset(manifest, out, SMALL, progress=False) == {"cropped": 1, "reused": 1, "error": 0}
    assert victim.read_bytes() == good and read_rgb(victim).shape == (48, 48, 3)


def test_a_truncated_augmented_frame_is_redone_on_the_next_run(tmp_path):
    manifest = _dataset(tmp_path, ("cam1",))
    crop_dataset(manifest, tmp_path / "frontal", SMALL, progress=False)
    out = tmp_path / "crops"
    p = params_of(AugmentParams, "augment")
    assert augment_dataset(tmp_path / "frontal", out, p, progress=False)["augmented"] == 2
    victim = out / "S01" / "000" / "cam2" / "img_003.png"
    good = victim.read_bytes()
    victim.write_bytes(good[:40])
    c = augment_dataset(tmp_path / "frontal", out, p, progress=False)
    assert (c["augmented"], c["reused"]) == (1, 1)
    assert victim.read_bytes() == good
