"""The fixed sets the trainer's commands choose from, as Literal types: typer turns each into a choice that
`--help` lists and that refuses anything else before a run starts (tests/emogan/test_cli.py walks them).
The config and ablation names mirror params.yaml `train:` (a test keeps them equal)."""
from __future__ import annotations

from typing import Literal

Config = Literal["small", "medium", "paper"]            # params.yaml train.<config>
Ablation = Literal["full", "no_rec", "no_de", "no_gw"]  # params.yaml train.ablations (Table IV)
Efer = Literal["own", "fer2013", "file"]                # the image e_FER behind L_GW
Device = Literal["cpu", "cuda", "cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:4", "cuda:5", "cuda:6", "cuda:7"]
