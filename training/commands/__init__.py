"""The trainer side's typer commands, thin: resolve params, call one function, print one line.
Mounted on the `emogan` app by emogan/cli.py."""
