"""Checkpoints: what a trained model folder carries and how it may be loaded.

* :mod:`~text4seg.checkpoints.trust`: a folder that ships code (``auto_map``, ``*.py``) is refused unless the
  user trusts it (ms-swift loads everything with ``trust_remote_code=True``).
* :mod:`~text4seg.checkpoints.settings`: the ms-swift ``args.json`` a checkpoint carries (template, pixel
  budget) and the engine set-up that reproduces training.
* :mod:`~text4seg.checkpoints.align`: image preprocessing as in training (the whole-image LLaVA template).

Used by training (export), inference (predict) and serving alike; imports only ``data``/``descriptors``.
"""
