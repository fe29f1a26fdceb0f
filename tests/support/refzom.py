"""Ref-ZOM in its released layout (RIS-DMMI's REFER loader): ``<root>/ref-zom/refs(final).p`` +
``instances.json``, images in ``<root>/images/trainval2014/``.

Refs have the REFER keys plus ``source``: ``"one"`` (``ann_id`` an int), ``"many"`` (``ann_id`` a list of
ints: the target is their union) and ``"zero"`` (no target in the image; ``ann_id`` still names one of the
image's annotations, which the authors' loader ignores). Splits ``train`` and ``test``.
"""

from __future__ import annotations

import copy
import pickle
import shutil
from pathlib import Path

from support.fakes import make_refer


def make_refzom(root: str | Path, n_images: int = 4, seed: int = 0) -> dict:
    """Write the fixture; returns ``{"one": n, "many": n, "zero": n}`` refs."""
    root = Path(root)
    make_refer(root, "ref-zom", "final", n_images=n_images, splits=("train", "test"), seed=seed)
    src = root / "images" / "mscoco" / "images" / "train2014"
    dst = root / "images" / "trainval2014"
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(src), str(dst))
    path = root / "ref-zom" / "refs(final).p"
    refs = pickle.loads(path.read_bytes())
    out, counts = [], {"one": 0, "many": 0, "zero": 0}
    next_ref = max(r["ref_id"] for r in refs) + 1
    next_sent = max(s["sent_id"] for r in refs for s in r["sentences"]) + 1
    by_image: dict = {}
    for r in refs:
        by_image.setdefault(r["image_id"], []).append(r)
    for group in by_image.values():
        one, many = group[0], group[1]
        one["source"] = "one"
        many["source"] = "many"
        many["ann_id"] = [one["ann_id"], many["ann_id"]]
        zero = copy.deepcopy(one)
        zero.update(ref_id=next_ref, source="zero")
        for s in zero["sentences"]:
            s["sent_id"], next_sent = next_sent, next_sent + 1
        zero["sent_ids"] = [s["sent_id"] for s in zero["sentences"]]
        next_ref += 1
        out += [one, many, zero]
        for k in ("one", "many", "zero"):
            counts[k] += 1
    path.write_bytes(pickle.dumps(out, protocol=2))
    return counts
