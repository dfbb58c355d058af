"""The `emogan` command: one sub-command per stage. Stage modules keep heavy imports inside functions."""
from __future__ import annotations

import logging
import sys

import typer

from pipeline import augment, crop, manifest
from pipeline import synth, synth_check
from pipeline import flow, folds, normalize, stats
from pipeline import weights
from pipeline.errors import EmoganError
from training import commands as train_commands
from training import eval_commands
from training import infer_cli

app = typer.Typer(
    name="emogan",
    help="eMotion-GAN: preprocessing stages (DVC graph) and trainer for motion-based face frontalization.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _group() -> None:
    """Keeps `emogan` a command group even while it has a single sub-command."""


# Stage commands are registered below, one line each, in stage-graph order.
app.command("synth")(synth.command)
app.command("synth-check")(synth_check.command)
app.command("manifest")(manifest.manifest_command)
app.command("crop")(crop.crop_command)
app.command("augment")(augment.augment_command)
app.command("flow")(flow.cli)
app.command("stats")(stats.cli)
app.command("normalize")(normalize.cli)
app.command("folds")(folds.cli)
app.command("train-fer")(train_commands.train_fer_command)
app.command("train")(train_commands.train_command)
app.command("train-flowcnn")(eval_commands.train_flowcnn_command)
app.command("baseline-landmark")(eval_commands.baseline_landmark_command)
app.command("evaluate")(eval_commands.evaluate_command)
app.command("report")(eval_commands.report_command)
app.command("export")(infer_cli.export_command)
app.command("average-face")(infer_cli.average_face_command)
app.command("frontalize")(infer_cli.frontalize_command)
app.command("transfer")(infer_cli.transfer_command)

# Set-up commands (not stages): `emogan weights fetch NAME`.
app.add_typer(weights.app, name="weights")


def main() -> None:
    """Console entry point: user errors print one clear line and exit 2."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except EmoganError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
