"""Constrained decoding: the engines that keep a model's answer inside its scheme's grammar, token by token.

The grammars themselves belong to the descriptor format (:mod:`text4seg.descriptors`: each scheme's exact
EBNF, ``Scheme.ebnf``, and its character-level state machine, ``Scheme.grammar``); this package turns them
into token masks for a tokenizer and a generation loop. torch and xgrammar are imported lazily.

* :mod:`~text4seg.decoding.xgr` (+ :mod:`~text4seg.decoding.xgr_rows`): xgrammar compiles each query's exact
  EBNF (LRU-cached); the default engine, about 1 ms per step on a 152k vocabulary.
* :mod:`~text4seg.decoding.constrain`: the character-level state machine lifted to tokens in Python (the
  differential reference of the xgrammar engine), and the answer regex.
* :mod:`~text4seg.decoding.bodies`: request bodies that carry the grammar to servers (``swift deploy``,
  ``vllm serve``).

:mod:`text4seg.inference.constrained` picks an engine for a predict run.
"""
