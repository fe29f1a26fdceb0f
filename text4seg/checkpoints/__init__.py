"""Checkpoints: what a trained model folder carries and how it may be loaded.

* :mod:`~text4seg.checkpoints.trust`: a folder that ships code (``auto_map``, ``*.py``) is refused unless the
  user trusts it (ms-swift loads everything with ``trust_remote_code=True``).
* :mod:`~text4seg.checkpoints.settings`: the ms-swift ``args.json`` a checkpoint carries (template, pixel
  budget), model references, and the engine set-up that reproduces training.
* :mod:`~text4seg.checkpoints.trained`: ``text4seg.json``, what the answers need (scheme, grid, questions,
  label bias), written at training time and read by predict, decode and the app.
* :mod:`~text4seg.checkpoints.align`: image preprocessing as in training (the whole-image LLaVA template,
  the released models' templates).
* :mod:`~text4seg.checkpoints.convert` (original LLaVA -> llava-hf), :mod:`~text4seg.checkpoints.swift2_lora`
  (ms-swift 2.x adapters merged), over :mod:`~text4seg.checkpoints.weights`: the released checkpoints made
  loadable (``text4seg convert``); :mod:`~text4seg.checkpoints.official`: their prompts and preprocessing.

Used by training, inference and serving alike; imports only ``data`` and ``descriptors``.
"""
