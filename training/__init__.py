"""emotion-gan trainer. The core (this folder: config, data, flowrep, checkpoint, distributed helpers, the GAN
step and the loop, the classifier fitting) sits on models/; evaluation/ and inference/ use both; commands/
holds the thin typer commands. Imports go down only: pipeline < models < core < evaluation, inference <
commands (and the `emogan` app above all)."""
