"""Every call into ms-swift's inference engine, in one place (its private ones included).

ms-swift's public ``TransformersEngine.infer`` takes no per-batch hook; text4seg needs one to hand
``model.generate`` its logits processors (constrained decoding, extra processors) after the engine's
template has built the inputs, so it calls the engine's ``_infer(requests, config, pre_infer_hook=...)``,
and reads a batch's prompt length with ``_get_num_tokens(inputs)`` (what ms-swift itself uses to cap
``max_tokens`` by the context). Those two private names appear only here: an ms-swift release that
renames them breaks this module and nothing else.

* :func:`load_engine`: a ``TransformersEngine`` for a checkpoint (the project's templates and image
  budget set first, :func:`text4seg.checkpoints.settings.prepare_engine`; the KV cache switched back on);
* :func:`infer`: greedy answers ``[(text, completion_tokens)]`` for requests ``(content, images)``;
* :func:`prompt_tokens`: the padded prompt length of one batch's inputs (inside a hook).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from text4seg._lazy import require


def enable_kv_cache(engine) -> None:
    """``swift sft`` saves ``use_cache: false`` in a trained checkpoint (gradient checkpointing needs it);
    ``generate`` then recomputes the whole sequence at every step. Turn the cache back on for inference."""
    model = getattr(engine, "model", None)
    for cfg in (getattr(model, "config", None), getattr(model, "generation_config", None)):
        if cfg is not None and getattr(cfg, "use_cache", None) is False:
            cfg.use_cache = True
    sub = getattr(getattr(model, "config", None), "text_config", None)
    if sub is not None and getattr(sub, "use_cache", None) is False:
        sub.use_cache = True
    gc = getattr(engine, "generation_config", None)
    if gc is not None and getattr(gc, "use_cache", None) is False:
        gc.use_cache = True


def load_engine(
    model: str | os.PathLike, adapters: Sequence[str | os.PathLike] = (), batch_size: int = 8, **engine_kwargs
):
    """An ms-swift ``TransformersEngine`` for ``model`` (+ LoRA ``adapters``), ``batch_size`` requests per
    ``generate``; ``engine_kwargs`` (``model_type``, ``template_type``, ...) go to the engine. The caller
    has checked the folders (:mod:`text4seg.checkpoints.trust`)."""
    swift = require("swift")
    from text4seg.checkpoints.settings import prepare_engine

    # what the checkpoint was trained with: the project's templates, the Qwen image-pixel budget
    prepare_engine(model, adapters=adapters or ())
    engine = swift.TransformersEngine(
        str(model),
        adapters=[str(a) for a in adapters] if adapters else None,
        max_batch_size=batch_size,
        **engine_kwargs,
    )
    enable_kv_cache(engine)
    return engine


def infer(
    engine,
    requests: Sequence[tuple[str, Sequence[str]]],
    max_tokens: int,
    hook: Callable[[dict], dict] | None = None,
) -> list[tuple[str, int]]:
    """Greedy answers ``[(text, completion_tokens), ...]`` of ``engine`` to ``requests``
    (``(user content with one <image> tag per image, image paths)`` each), at most ``max_tokens`` new
    tokens each. ``hook(kwargs) -> kwargs`` sees the ``generate`` arguments of the batch
    (``kwargs["inputs"]``, ``kwargs["generation_config"]``) before generation."""
    swift = require("swift")
    reqs = [
        swift.InferRequest(messages=[{"role": "user", "content": content}], images=list(images))
        for content, images in requests
    ]
    cfg = swift.RequestConfig(max_tokens=int(max_tokens), temperature=0)
    extra = {} if hook is None else {"pre_infer_hook": hook}
    out = []
    for r in engine._infer(reqs, cfg, **extra):
        if isinstance(r, Exception):
            raise r
        out.append((r.choices[0].message.content or "", int(r.usage.completion_tokens)))
    return out


def prompt_tokens(engine, inputs: dict) -> int:
    """The padded prompt length of one batch's ``generate`` inputs (inside an :func:`infer` hook)."""
    return int(engine._get_num_tokens(inputs))
