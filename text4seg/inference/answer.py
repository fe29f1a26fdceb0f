"""One answer to one query -> its result record: decode, SAM-refine, draw the overlay.

:func:`query_record` is the single step every predictor shares (in-process
:class:`~text4seg.inference.predict.Predictor`, the server client
:class:`~text4seg.inference.api_client.ApiPredictor`, the web app), so an answer scores the same
whichever way it was generated. The record's schema and the answer-to-mask step are
:mod:`text4seg.data.results`'; the overlay is :mod:`text4seg.data.overlay`'s, with the query's ground
truth outlined when it carries one (:attr:`text4seg.data.queries.Query.truth`).
"""

from __future__ import annotations

import os
from pathlib import Path

from text4seg.data.overlay import save_overlay
from text4seg.data.queries import Query, truth_mask
from text4seg.data.results import ResultRecord, answer_to_masks, make_record


def query_size(q: Query) -> tuple[int, int]:
    """``(height, width)`` of the query's image: its recorded size, else the image header's."""
    if q.width > 0 and q.height > 0:
        return q.height, q.width
    from text4seg.data.images import image_size

    w, h = image_size(q.image)
    return h, w


def overlay_name(q: Query) -> str:
    """The overlay's path relative to the output folder: ``overlays/<id>_t<turn>.png`` (the id made safe
    for a file name and cut to its last 80 characters)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in q.id)[-80:]
    return f"overlays/{safe}_t{q.turn}.png"


def query_record(
    q: Query,
    text: str,
    ntok: int | None,
    out_dir: str | os.PathLike | None,
    overlays: bool,
    constrained: bool | None,
    refiner=None,
) -> ResultRecord:
    """The result record of the answer ``text`` (``ntok`` generated tokens, None when unknown) to ``q``:
    decode it on the query's grid and scheme, refine it with ``refiner`` (a
    :class:`~text4seg.inference.refine.Refiner` or None) and, when ``overlays`` and ``out_dir``, write
    its overlay under ``out_dir``."""
    h, w = query_size(q)
    am = answer_to_masks(text, h, w, q.grid, q.scheme)
    refined = None
    if refiner is not None:
        refined = refiner.refine_label_map(q.image, am.label_map, key=q.image)
    overlay = None
    if out_dir is not None and overlays:
        overlay = overlay_name(q)
        save_overlay(
            Path(out_dir) / overlay,
            q.image,
            am.mask,
            refined,
            label_map=am.label_map,
            names=am.names,
            query=q.question,
            gt=truth_mask(q, h, w),
            grid=q.grid,
        )
    return make_record(
        id=q.id,
        turn=q.turn,
        image=q.image,
        query=q.question,
        labels=q.labels,
        answer=text,
        scheme=q.scheme,
        grid=q.grid,
        masks=am,
        refined_map=refined,
        num_tokens=ntok,
        constrained=constrained,
        overlay=overlay,
    )
