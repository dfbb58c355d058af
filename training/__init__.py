"""emotion-gan trainer: networks, losses, streaming data, training and evaluation loops."""
