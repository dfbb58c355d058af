"""Judging trained models the paper's way: metrics, the Flow-CNN judge, the landmark baseline, `emogan evaluate`,
the cross-validation report, and synth-check's FER2013 scoring of a synthetic set."""
