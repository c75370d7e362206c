"""WandB sweeps mapped onto the engine."""
