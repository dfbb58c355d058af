"""Using a trained model: the bundle (one safetensors file + JSON sidecar), frontalization of new recordings
and motion transfer onto another face."""
