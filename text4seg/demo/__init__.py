"""The embedded default: build synthetic shapes, train a tiny VLM from random weights through ``swift sft``,
predict the held-out split through :mod:`text4seg.inference.predict`, score it with
:mod:`text4seg.evaluation.evaluate`. ``text4seg demo`` is its command line.

Modules, in the order of a run (:func:`run_demo` in :mod:`~text4seg.demo.pipeline` sequences them):

- :mod:`~text4seg.demo.config`: :class:`DemoConfig` (data, model and prediction knobs), presets
  :data:`FULL` and :data:`QUICK`;
- :mod:`~text4seg.demo.data`: ``data_builders.build_jsonl("synthetic", ...)`` builds ``train``/``val``/
  ``test``; every row then gets one fixed question and answer sentence;
- :mod:`~text4seg.demo.model`: :func:`make_tiny_llava`, the project's one tiny LLaVA-HF factory (CLIP
  vision tower + Llama LM, random weights, no download, whole-image processor), here with one token per
  answer cell;
- :mod:`~text4seg.demo.train`: the recipe ``recipes/demo.yaml`` with the run's paths, seed and steps as
  overrides, run by ``swift sft`` (**full fine-tuning**: the weights start random, so LoRA would have
  nothing to adapt), live loss;
- :mod:`~text4seg.demo.evaluate`: greedy prediction, constrained decoding off and on, on the held-out
  ``test`` split; a label-token bias tuned on ``val``; an image-blind control;
- :mod:`~text4seg.demo.report`: ``metrics.json``, a loss plot, overlay PNGs, a printed table.

Why this model (measured, see ``docs/demo.md``)
-----------------------------------------------
A tiny LM trained from random weights on R-RLE answers learns to copy rows and writes the all-``others``
mask: the few tokens that depend on the image are drowned by tokens that do not. The demo therefore
makes the image the cheapest explanation of every answer token:

* 64 px images, CLIP patch 4: 16 x 16 = 256 image tokens, one per grid cell;
* the ``full`` scheme and a tokenizer in which every cell (``"others"``, ``"| others"``, ``"\\n others"``,
  the same for each target label) is one token, and fixed prompts: answer cell ``(r, c)`` is then always
  the same number of tokens after image patch ``(r, c)``, a fixed-offset look-up that rotary position
  embeddings (Llama) make cheap to learn;
* ``vision_feature_layer=0``: the projector reads the layer-normed patch embeddings (plus CLIP's learned
  positions); the pre-``post_layernorm`` last hidden state of a random CLIP grows to ~1000x scale;
* an easier default task (circles of distinct colours), so a cell's colour decides it.

Importing this package imports no torch, transformers or ms-swift.
"""

from text4seg.demo.config import FULL, QUICK, DemoConfig
from text4seg.demo.pipeline import run_demo
from text4seg.demo.report import format_summary

__all__ = ["FULL", "QUICK", "DemoConfig", "format_summary", "run_demo"]
