"""Training loop, checkpoints and EMA."""
