"""Training: ms-swift recipes (load, override, validate data, the swift command) and whole-image checks."""
