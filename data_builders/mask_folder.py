"""``mask-folder``: images, mask PNGs and a table of queries (LISA's ReasonSeg layout, generalised).

Layout under ``--root``::

    images/<name>.jpg|png...        the images
    masks/<name>.png                PNGs of any mode (1, L, LA, P, RGB, RGBA, I;16), in one of three forms:
                                      binary: non-zero = the target (no ``id`` in the query; any colour
                                        channel; an alpha channel that varies is the mask itself:
                                        alpha >= 128 = the target, a constant one is ignored);
                                      class ids: pixel value v is class v (``classes.txt`` names them);
                                      instance ids: pixel value v is instance v (8- or 16-bit PNG)
    classes.txt                     optional: line v (0-based) is the name of class value v
    queries.jsonl | queries.csv     one query per line / row (``--set queries=FILE`` for another file)

A query has ``image`` (relative to ``images/``), ``mask`` (relative to ``masks/``; default: the image's
stem + ``.png``), optional ``id`` (the pixel value, or a class name from ``classes.txt``), ``query`` (the
free text; may be empty when ``id`` is a class name, which is then the text), optional ``split``::

    {"image": "p1.jpg", "mask": "p1.png", "id": "road", "query": "where cars drive"}
    image,mask,id,query                          (CSV: the same columns, a header line first)
    p1.jpg,p1.png,2,where cars drive

Every query is one sample; a query whose id is absent from its mask (or whose binary mask is all zero)
is a no-target sample; a target present in the mask that no grid cell samples is ``lost_on_grid``
(counted, dropped/kept/failed per ``--empty-targets``, never written as absent). Splits: the
``split`` column when present (rows of other splits are left out), else ``--set split_ratio=`` (hash of
the image name), else every row. ``--set task=reason`` uses the reasoning templates (default ``res``).
Errors name the queries file and line.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from text4seg.data.images import open_image
from text4seg.data.records import Sample
from text4seg.data.rle import mask_to_rle
from text4seg.descriptors import encode, mask_to_grid

from .base import BadInput, BuildConfig, Builder
from .common import image_size, inside, label_of, read_text
from .options import Option
from .owndata import SPLIT_RATIO, split_of, split_ratio_of
from .prompts import reason_turn, refer_turn


def _read_queries(path: Path) -> list[tuple[int, dict]]:
    """``[(line number, record), ...]`` of a queries JSONL or CSV; ``ValueError`` names file:line."""
    rows: list[tuple[int, dict]] = []
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            if path.suffix.lower() == ".csv":
                reader = csv.DictReader(fh)
                if not reader.fieldnames or "image" not in reader.fieldnames:
                    raise ValueError(f"{path}:1: the header must name the columns image,mask,id,query")
                try:
                    for rec in reader:
                        rows.append(
                            (reader.line_num, {k: v for k, v in rec.items() if k and v not in ("", None)})
                        )
                except csv.Error as exc:  # a field over csv's limit (128 KB), a NUL byte...
                    raise ValueError(f"{path}:{reader.line_num}: bad CSV ({exc})") from None
            else:
                from text4seg.data.jsonl import iter_jsonl

                rows.extend(iter_jsonl(path))  # bounded lines, strict JSON, file:line in every error
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc})") from None
    if not rows:
        raise ValueError(f"{path}: no queries (an empty file)")
    return rows


def mask_planes(arr: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``(colour, alpha)`` of a decoded mask: ``colour`` is ``(H, W)`` or ``(H, W, C)``, ``alpha`` the
    ``(H, W)`` alpha channel of an ``LA``/``RGBA``/``PA`` image, else None."""
    if mode in ("LA", "RGBA", "La", "RGBa", "PA") and arr.ndim == 3:
        return arr[..., :-1] if arr.shape[2] > 2 else arr[..., 0], arr[..., -1]
    return arr, None


def read_mask(path: Path, value: int | None, where: str) -> np.ndarray:
    """The ``(H, W)`` bool target of a mask PNG, for every PNG mode (``1``, ``L``, ``LA``, ``P``, ``RGB``,
    ``RGBA``, ``I;16``...), as the layout documents and editors export.

    * Alpha (``LA``, ``RGBA``): a constant alpha channel (an editor's opaque export) is ignored and the
      colour decides; an alpha channel that varies is the mask itself (a cutout layer): a pixel at least
      half opaque (alpha >= 128) is the target. An ``id`` then needs the constant-alpha form.
    * Binary (no ``id``): a non-zero pixel (any colour channel; ``P``: the palette index) is the target.
    * ``id``: pixel value ``id`` of a single-channel mask (``1``/``L``/``P``/``I;16``/``I``; an RGB(A) mask
      whose three channels are equal counts as grey).
    """
    try:
        with open_image(path) as im:
            mode = im.mode
            arr = np.asarray(im)
    except FileNotFoundError:
        raise BadInput(f"{where}: mask not found: {path}", cause="image_not_found") from None
    except (ValueError, OSError) as exc:
        raise BadInput(f"{where}: cannot read mask: {exc}") from None
    colour, alpha = mask_planes(arr, mode)
    if alpha is not None and alpha.size and alpha.min() != alpha.max():
        if value is not None:
            raise BadInput(
                f"{where}: mask {path} ({mode}) has a varying alpha channel (a cutout); an id needs a "
                "single-channel PNG"
            )
        return alpha >= 128
    if colour.ndim == 3:
        if value is None:
            return colour.any(axis=2)
        if (colour == colour[..., :1]).all():
            colour = colour[..., 0]
        else:
            raise BadInput(
                f"{where}: mask {path} is a colour {mode} image; an id needs a single-channel PNG "
                "(grey, palette or 16-bit)"
            )
    return colour != 0 if value is None else colour == value


class MaskFolder(Builder):
    name = "mask-folder"
    help = "images/ + masks/ (binary, class-id or instance-id PNGs) + queries.jsonl|csv (+ classes.txt)"
    layout = "<root>/images/, <root>/masks/*.png, <root>/queries.jsonl or queries.csv, [<root>/classes.txt]"
    options = (
        Option(
            "task", str, "res", "referring (res) or reasoning (reason) questions", choices=("res", "reason")
        ),
        Option("queries", str, None, "the queries file (unset: <root>/queries.jsonl or queries.csv)"),
        SPLIT_RATIO,
    )

    def __init__(self, cfg: BuildConfig):
        Builder.__init__(self, cfg)
        self.root = Path(cfg.root)
        cfg = self.cfg
        self.task = self.opt("task")
        q = self.opt("queries")
        if q:
            self.qpath = Path(q).expanduser().resolve()
        else:
            found = [self.root / n for n in ("queries.jsonl", "queries.csv") if (self.root / n).is_file()]
            if not found:
                raise FileNotFoundError(
                    f"no queries.jsonl or queries.csv in {self.root} (layout: {self.layout})"
                )
            self.qpath = found[0]
        if not self.qpath.is_file():
            raise FileNotFoundError(f"queries file not found: {self.qpath}")
        cls_file = self.root / "classes.txt"
        self.classes = (
            [s.strip() for s in read_text(cls_file, "classes file").splitlines()] if cls_file.exists() else []
        )
        rows = _read_queries(self.qpath)
        ratio = split_ratio_of(cfg)
        kept = []
        for n, rec in rows:
            if "split" in rec:
                if str(rec["split"]) != cfg.split:
                    continue
            elif ratio is not None and split_of(str(rec.get("image", "")), cfg.seed, ratio) != cfg.split:
                continue
            kept.append((n, rec))
        self.rows = kept

    def units(self) -> list[int]:
        return list(range(len(self.rows)))

    def _value(self, raw, where: str) -> int | None:
        if raw is None:
            return None
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if not isinstance(raw, str):
            raise BadInput(f"{where}: id {str(raw)[:80]!r} must be a pixel value or a class name")
        s = raw.strip()
        if re.fullmatch(r"-?[0-9]+", s):  # ASCII digits only: "²".isdigit() is true, int("²") fails
            return int(s)
        if s in self.classes:
            return self.classes.index(s)
        raise BadInput(
            f"{where}: id {s!r} is neither a pixel value nor a name in classes.txt {self.classes[:20]}"
        )

    def where(self, unit) -> str:
        return f"{self.qpath}:{self.rows[unit][0]}"

    def make(self, unit: int, rep: int) -> list[Sample]:
        cfg = self.cfg
        n, rec = self.rows[unit]
        where = f"{self.qpath}:{n}"
        for key in ("image", "mask", "query"):
            v = rec.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (str, int, float))):
                raise BadInput(f"{where}: {key} {str(v)[:80]!r} must be a string", cause="malformed_record")
        if not rec.get("image"):
            raise BadInput(f"{where}: no 'image'")
        image = inside(self.root / "images", str(rec["image"]))
        if not image.exists():
            raise BadInput(f"{where}: image not found: {image}", cause="image_not_found")
        mask_rel = str(rec.get("mask") or Path(str(rec["image"])).with_suffix(".png").as_posix())
        mpath = inside(self.root / "masks", mask_rel)
        value = self._value(rec.get("id"), where)
        m = read_mask(mpath, value, where)
        text = str(rec.get("query") or "").strip()
        if not text:
            if value is not None and isinstance(rec.get("id"), str) and rec["id"] in self.classes:
                text = rec["id"]
            else:
                raise BadInput(f"{where}: empty query (give 'query', or an 'id' that is a class name)")
        h, w = m.shape
        sid = self.sample_id(n, rep=rep)
        iw, ih = image_size(image, where)
        if (iw, ih) != (w, h):
            raise BadInput(f"{where}: image {image} is {iw}x{ih} but mask {mpath} is {w}x{h}")
        label = label_of(text)
        grid = mask_to_grid(m, cfg.grid, labels=text)
        area = int(m.sum())
        # a mask without the id (or an all-zero binary mask) is a no-target query by design; a target
        # present in the mask is screened (lost on the grid: counted, never written as absent)
        if area and self.screen_target(area, bool((grid != "others").any()), 1, f"{sid} ({where})"):
            return []
        empty = area == 0
        rng = self.rng(sid)
        desc = encode(grid, cfg.scheme)
        turn = (
            reason_turn(rng, text, desc, empty)
            if self.task == "reason"
            else refer_turn(rng, text, desc, empty)
        )
        return [
            self.sample(
                sid,
                image=str(image),
                width=w,
                height=h,
                turns=[turn],
                task=self.task,
                labels=[] if empty else [label],
                source={
                    "dataset": self.name,
                    "split": cfg.split,
                    "image_id": str(rec["image"]),
                    "ref_id": "" if value is None else str(value),
                    "sent_ids": [str(n)],
                },
                masks=[mask_to_rle(m)] if cfg.with_gt else [],
            )
        ]
