"""Datamodules: evaluation image sets (kodak, folder, samples, synthetic) and training crops (patches)."""
