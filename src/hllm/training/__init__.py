"""Training: batches, the DeepSpeed trainer and its configuration."""
