"""Inference: a trained model answers queries (ms-swift engine), answers become masks, SAM refines them."""
