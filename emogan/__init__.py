"""The `emogan` command: the composition root that mounts pipeline's stage commands and the trainer's."""
