"""Training: Lightning jobs, grids of them, W&B tracking."""
