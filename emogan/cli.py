"""The `emogan` command: the composition root. It mounts pipeline's stage commands and the trainer's
commands (training/commands/) on one typer app; neither package imports this one. Stage modules keep
heavy imports inside their functions, so `emogan --help` stays fast."""
from __future__ import annotations

import logging
import sys

import typer

from pipeline import augment, console, crop, flow, folds, manifest, normalize, photos, stats, synth, weights
from pipeline.errors import EmoganError
from training.commands import evaluate as evaluate_commands
from training.commands import infer as infer_commands
from training.commands import train as train_commands

app = typer.Typer(
    name="emogan",
    help="eMotion-GAN: preprocessing stages (DVC graph) and trainer for motion-based face frontalization.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"emogan {version('emotion-gan')}")
        except PackageNotFoundError:  # run from a checkout that was never installed
            typer.echo("emogan (not installed: run `make` in the project folder)")
        raise typer.Exit()


@app.callback()
def _group(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="warnings and errors only, no progress bars"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="also the log lines of mediapipe, TF Lite, "
                                 "OpenCV and other libraries (kept off the console by default)"),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="print the version and exit"),
) -> None:
    """Options that come before the command: `emogan -q flow data/crops/synth`."""
    if quiet and verbose:
        raise typer.BadParameter("--quiet and --verbose exclude each other")
    console.configure(-1 if quiet else 1 if verbose else 0)


# One line per command, in stage-graph order: pipeline's stages, then the trainer's.
app.command("synth")(synth.command)
app.command("synth-check")(evaluate_commands.synth_check_command)
app.command("manifest")(manifest.manifest_command)
app.command("crop")(crop.crop_command)
app.command("augment")(augment.augment_command)
app.command("flow")(flow.cli)
app.command("stats")(stats.cli)
app.command("normalize")(normalize.cli)
app.command("folds")(folds.cli)
app.command("train-fer")(train_commands.train_fer_command)
app.command("train")(train_commands.train_command)
app.command("train-flowcnn")(evaluate_commands.train_flowcnn_command)
app.command("baseline-landmark")(evaluate_commands.baseline_landmark_command)
app.command("evaluate")(evaluate_commands.evaluate_command)
app.command("report")(evaluate_commands.report_command)
app.command("export")(infer_commands.export_command)
app.command("average-face")(infer_commands.average_face_command)
app.command("frontalize")(infer_commands.frontalize_command)
app.command("transfer")(infer_commands.transfer_command)

# Set-up commands (not stages): `emogan weights fetch NAME`, `emogan weights fit-landmarks`.
weights.app.command("fit-landmarks")(photos.fit_landmarks_command)
app.add_typer(weights.app, name="weights")


def main() -> None:
    """Console entry point: user errors print one clear line and exit 2."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except EmoganError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        sys.exit(2)
