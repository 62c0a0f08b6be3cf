"""The reference pipeline's synthetic data: used by its training script and the demo producer."""
