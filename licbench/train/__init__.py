"""Training: Lightning jobs, grids of them, W&B tracking; CompressAI weights imported as checkpoints."""
