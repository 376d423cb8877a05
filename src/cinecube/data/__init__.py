"""Training data: procedural worlds and batching."""
