"""``text4seg evaluate --report report.html``: one self-contained HTML page to see where a model fails.

The page (no external assets; every picture is an inline ``data:image/png`` URL) has

1. the metrics tables (the dict of :func:`text4seg.evaluation.evaluate.evaluate`: the sample counts,
   strict-parse share and repair counts, then every section present, as the printed table shows it
   (:func:`text4seg.evaluation.scorers.tables`): referring, Ref-ZOM, semantic, multi-expression,
   interactive, panoptic PQ/SQ/RQ, instance (Hungarian), video J/F/J&F; raw and SAM-refined side by side);
   each metric is shown by a reader's name (:func:`metric_label`), its raw key in small print and tooltip;
2. a histogram of per-sample IoU (an inline SVG; 10 bins of width 0.1, the last one closed: ``[0.9, 1]``),
   raw bars and, when refinement ran, refined bars beside them; the correct empty answers (a no-target
   sample answered "no target": IoU 1 by convention) are a bar apart, not counted with the real hits;
3. a gallery ranked worst first (by the refined IoU when present, else the raw IoU; samples without a
   per-sample IoU, e.g. semantic ones, last): every sample when they fit in ``max_gallery`` cards, else
   the worst, the best and a seeded random draw of the others (a third each): each card is the overlay of
   :func:`text4seg.data.overlay.overlay_image` (the query, one colour per label with a legend, the
   ground-truth outline in yellow, the faint answer grid, coarse and refined side by side), the IoU, the
   answer's first characters and its repairs.

Inputs: the results JSONL (``text4seg predict``/``decode``), the built JSONL (ground truth), the metrics
dict and the per-sample rows that :func:`evaluate` wrote (``per_sample.jsonl``). Written atomically.
"""

from __future__ import annotations

import base64
import html
import json
import os
import random
from collections.abc import Sequence
from pathlib import Path

from text4seg.data.images import load_rgb
from text4seg.data.jsonl import AtomicWriter, read_jsonl
from text4seg.data.overlay import overlay_image, png_bytes
from text4seg.data.results import ResultRecord, answer_to_masks, iter_records, rles_to_label_map
from text4seg.data.rle import rle_to_mask
from text4seg.evaluation.ground_truth import join_key, load_ground_truth
from text4seg.evaluation.scorers import tables

BINS = 10
MID = 'text-anchor="middle"'


def iou_histogram(values: Sequence[float], bins: int = BINS) -> list[int]:
    """Counts of ``values`` (in [0, 1]) in ``bins`` equal bins; 1.0 falls in the last one."""
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, max(0, int(float(v) * bins)))] += 1
    return counts


def _svg_histogram(series: dict[str, list[float]], empty: dict[str, int] | None = None) -> str:
    """The IoU bars of each series, and beside them (``empty``) the correct empty answers of each: a
    no-target sample answered "no target" scores IoU 1 by convention, so it is counted apart from the
    real hits of the [0.9, 1] bar."""
    colours = {"raw": "#e63c28", "refined": "#0072b2"}
    empty = {k: v for k, v in (empty or {}).items() if k in series}
    hists = {k: iou_histogram(v) for k, v in series.items() if v or empty.get(k)}
    if not hists:
        return "<p>No per-sample IoU (no referring samples).</p>"
    top = max(max([*h, empty.get(k, 0)]) for k, h in hists.items()) or 1
    w, h, left, bottom = 780, 260, 40, 30
    head = 24 + 16 * len(hists)  # the legend rows above the bars
    gap_x = 620  # the bars of the correct empty answers start here
    bw = (gap_x - left - 10) / BINS
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img">']
    parts.append(f'<line x1="{left}" y1="{h - bottom}" x2="{gap_x - 10}" y2="{h - bottom}" stroke="#444"/>')
    for i in range(BINS + 1):
        x = left + i * bw
        parts.append(f'<text x="{x:.1f}" y="{h - bottom + 16}" font-size="11" {MID}>{i / BINS:.1f}</text>')
    parts.append(f'<text x="{left - 6}" y="{head + 4}" font-size="11" text-anchor="end">{top}</text>')
    parts.append(f'<text x="{(gap_x + left) / 2:.0f}" y="{h - 2}" font-size="12" {MID}>per-sample IoU</text>')
    if empty:
        ex = gap_x + 10
        parts.append(f'<line x1="{ex}" y1="{h - bottom}" x2="{w - 10}" y2="{h - bottom}" stroke="#444"/>')
        parts.append(
            f'<text x="{(ex + w - 10) / 2:.0f}" y="{h - bottom + 16}" font-size="11" {MID}>'
            "correct empty</text>"
        )
        parts.append(
            f'<text x="{(ex + w - 10) / 2:.0f}" y="{h - 2}" font-size="11" {MID}>(IoU 1 by convention)</text>'
        )
    n = len(hists)
    for j, (kind, counts) in enumerate(hists.items()):
        for i, c in enumerate(counts):
            bh = (h - bottom - head) * c / top
            x = left + i * bw + 2 + j * (bw - 4) / n
            parts.append(
                f'<rect x="{x:.1f}" y="{h - bottom - bh:.1f}" width="{(bw - 4) / n:.1f}" height="{bh:.1f}" '
                f'fill="{colours.get(kind, "#777")}"><title>{kind} [{i / BINS:.1f}, {(i + 1) / BINS:.1f}): '
                f"{c}</title></rect>"
            )
        if kind in empty:
            c = empty[kind]
            bh = (h - bottom - head) * c / top
            ew = (w - gap_x - 30) / n
            parts.append(
                f'<rect x="{gap_x + 14 + j * ew:.1f}" y="{h - bottom - bh:.1f}" width="{ew - 4:.1f}" '
                f'height="{bh:.1f}" fill="{colours.get(kind, "#777")}" fill-opacity="0.55" '
                f'stroke="{colours.get(kind, "#777")}"><title>{kind} correct empty answers '
                f"(no target, answered none): {c}</title></rect>"
            )
        total = sum(counts) + empty.get(kind, 0)
        parts.append(
            f'<rect x="{left + 10}" y="{4 + 16 * j}" width="12" height="12" '
            f'fill="{colours.get(kind, "#777")}"/>'
            f'<text x="{left + 28}" y="{14 + 16 * j}" font-size="12">{kind} ({total} samples)</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


METRIC_LABELS = {
    "n": "samples",
    "n_no_target": "no-target samples",
    "n_targeted": "samples with a target",
    "n_empty": "empty samples",
    "n_classes_scored": "classes scored",
    "ciou": "cumulative IoU (cIoU)",
    "giou": "mean per-sample IoU (gIoU)",
    "miou": "mean IoU over classes (mIoU)",
    "oiou": "overall IoU (oIoU)",
    "iou": "IoU",
    "n_acc": "no-target accuracy (N-acc)",
    "t_acc": "targeted accuracy (T-acc)",
    "acc": "accuracy",
    "pq": "panoptic quality (PQ)",
    "sq": "segmentation quality (SQ)",
    "rq": "recognition quality (RQ)",
    "j": "region similarity (J)",
    "f": "contour accuracy (F)",
    "jf": "J&F mean",
    "f1": "F1",
    "tp": "true positives",
    "fp": "false positives",
    "fn": "false negatives",
    "precision": "precision",
    "recall": "recall",
    "frames": "frames",
    "extra_labels": "answers naming extra labels",
    "rejected": "rejected",
    "unscored": "not scored",
}
_AT_LABELS = {"pr": "precision at IoU {}", "rec_acc": "box accuracy at IoU {} (REC)", "ap": "AP at IoU {}"}


def metric_label(key: str) -> str:
    """A reader's name of a raw metric key (``"pr@0.5"`` -> ``"precision at IoU 0.5"``; ``"point miou"``
    -> ``"point: mean IoU over classes (mIoU)"``); an unknown key is shown as it is."""
    if " " in key:
        head, _, last = key.rpartition(" ")
        return f"{head}: {metric_label(last)}"
    base, at, th = key.partition("@")
    if at and base in _AT_LABELS:
        return _AT_LABELS[base].format(th)
    return METRIC_LABELS.get(key, key)


def _name_cell(key: str) -> str:
    """A table's first cell: the readable name, the raw key in small print and in the tooltip."""
    label = metric_label(key)
    raw = "" if label == key else f' <small class="k">{html.escape(key)}</small>'
    return f'<td title="{html.escape(key)}">{html.escape(label)}{raw}</td>'


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4f}"
    return html.escape(str(v))


def _metrics_table(metrics: dict) -> str:
    rows = [
        ("samples scored", metrics.get("n")),
        ("ground-truth rows without a prediction", metrics.get("missing")),
        ("predictions without ground truth", metrics.get("unmatched")),
        ("answers that parse strictly", metrics.get("parse_valid")),
        ("tokens per answer", metrics.get("tokens_per_answer")),
        ("answers naming another label", metrics.get("other_label_answers")),
    ]
    out = ['<table class="m"><tr><th colspan="2">overview</th></tr>']
    out += [f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in rows]
    out.append("</table>")
    for table in tables(metrics):
        head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
        out.append(f'<table class="m"><tr><th>{html.escape(table.title)}</th>{head}</tr>')
        for name, values in table.rows:
            cells = "".join(f"<td>{_fmt(v)}</td>" for v in values)
            out.append(f"<tr>{_name_cell(name)}{cells}</tr>")
        out.append("</table>")
    skip = ("answers", "parse_valid")
    reps = {k: v for k, v in (metrics.get("repairs") or {}).items() if v and k not in skip}
    if reps:
        out.append('<table class="m"><tr><th>repairs</th><th>answers</th></tr>')
        out += [f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in reps.items()]
        out.append("</table>")
    return "".join(out)


def _iou(row: dict, kind: str):
    v = (row.get(kind) or {}).get("iou")
    return None if v is None else float(v)


def _correct_empty(row: dict, kind: str) -> bool:
    """A no-target sample answered "no target" (IoU 1 by convention)."""
    block = row.get(kind) or {}
    return bool(block.get("gt_empty")) and bool(block.get("pred_empty"))


def _score(row: dict) -> float | None:
    v = _iou(row, "refined")
    return _iou(row, "coarse") if v is None else v


def _worst_first(row: dict):
    v = _score(row)
    return (v is None, 2.0 if v is None else v, str(row["id"]), int(row.get("turn", 0)))


def _gallery(ordered: list[dict], most: int) -> list[tuple[str, list[dict]]]:
    """The gallery's sections of rows sorted worst first: all of them when they fit in ``most`` cards;
    else the worst (a third and the rest), the best (a third; real hits before correct empty answers)
    and a random third of the others (seeded: the same page for the same files)."""
    if len(ordered) <= most:
        return [(f"all {len(ordered)} samples, worst first", ordered)]
    n_best = n_random = most // 3
    worst = ordered[: most - n_best - n_random]
    rest = ordered[len(worst) :]
    scored = [r for r in rest if _score(r) is not None]
    kind = lambda r: "refined" if _iou(r, "refined") is not None else "coarse"  # noqa: E731
    best = sorted(reversed(scored), key=lambda r: _correct_empty(r, kind(r)))[:n_best]  # stable: best first
    taken = {id(r) for r in best}
    others = [r for r in rest if id(r) not in taken]
    pick = sorted(random.Random(0).sample(range(len(others)), min(n_random, len(others))))
    return [
        (f"the {len(worst)} worst", worst),
        (f"the {len(best)} best", best),
        (f"{len(pick)} drawn at random from the other {len(others)}", [others[i] for i in pick]),
    ]


def _card(rec: ResultRecord, row: dict, gt: dict | None, rank: int, line: str = "record") -> str:
    """One gallery card; ``line`` (file:line of the record) names the source of any error. The image is
    opened through :func:`text4seg.data.images.load_rgb` (size checked from the header first)."""
    h, w = rec.height, rec.width
    am = answer_to_masks(rec.answer, h, w, rec.grid, rec.scheme)
    refined = None
    if rec.refined_labels is not None:
        refined = rles_to_label_map(rec.refined_labels, h, w, f"{line}: refined_labels")[0]
    elif rec.refined:
        refined = rle_to_mask(rec.refined, f"{line}: refined")
    gt_mask = rle_to_mask(gt["rle"], gt.get("rle_where", "ground truth")) if gt and gt.get("rle") else None
    image = rec.image
    if image is not None and os.path.exists(image):  # a FIFO or a folder there is refused by load_rgb
        image = load_rgb(image, f"{line}: image {image}")
    else:
        image = None
    pic = overlay_image(
        image, am.mask, refined, label_map=am.label_map, names=am.names, query=rec.query,
        gt=gt_mask, grid=rec.grid, min_side=160, max_side=360,
    )  # fmt: skip
    url = "data:image/png;base64," + base64.b64encode(png_bytes(pic)).decode("ascii")
    raw, ref = _iou(row, "coarse"), _iou(row, "refined")
    score = f"IoU raw {_fmt(raw)}" + ("" if ref is None else f" · refined {_fmt(ref)}")
    reps = "; ".join(r.kind + ("" if r.row is None else f" (row {r.row})") for r in rec.repairs)
    ans = rec.answer if len(rec.answer) <= 300 else rec.answer[:300] + "…"
    return (
        f'<div class="card" data-rank="{rank}"><div class="hd">#{rank} {html.escape(rec.id)} '
        f"turn {rec.turn} — {score}</div>"
        f'<img src="{url}" alt="overlay of {html.escape(rec.id)}">'
        f'<pre>{html.escape(ans)}</pre><div class="rp">repairs: {html.escape(reps) or "none"}</div></div>'
    )


CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 20px 28px; color: #222; background: #fafaf8; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 26px 0 8px; }
.sub { color: #666; } .tables { display: flex; gap: 18px; flex-wrap: wrap; align-items: flex-start; }
table.m { border-collapse: collapse; background: #fff; box-shadow: 0 1px 2px #0002; }
table.m th, table.m td { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: left; }
table.m th { background: #eceff1; } table.m td + td { text-align: right; font-variant-numeric: tabular-nums; }
.gallery { display: flex; flex-wrap: wrap; gap: 14px; }
.card { background: #fff; box-shadow: 0 1px 3px #0002; border-radius: 6px; padding: 8px; max-width: 760px; }
.card .hd { font-weight: 600; margin-bottom: 4px; } .card img { display: block; max-width: 100%; }
.card pre { font-size: 11px; background: #f3f3f0; padding: 4px 6px; white-space: pre-wrap;
            word-break: break-all; max-height: 90px; overflow: auto; margin: 6px 0 2px; }
.rp { font-size: 12px; color: #555; } h3 { font-size: 15px; margin: 18px 0 6px; }
small.k { color: #888; font-size: 11px; margin-left: 4px; }
"""


def _records_by_key(pred_path, gt_path, root) -> dict:
    """``{ground-truth key: (file:line, record)}`` of the results, and ``{None: ground truth entries}``."""
    gts = load_ground_truth(gt_path, root)
    by_question: dict[tuple, list] = {}
    for key, g in gts.items():
        by_question.setdefault((g["image"], g["query"]), []).append(key)
    recs: dict = {None: gts}
    for n, r in iter_records(pred_path):
        key = join_key(r, f"{pred_path}:{n}", gts, by_question, root) or r.key
        recs.setdefault(key, (f"{pred_path}:{n}", r))
    return recs


def write_report(
    path: str | os.PathLike,
    pred_path: str | os.PathLike,
    gt_path: str | os.PathLike,
    metrics: dict,
    per_sample: Sequence[dict] | str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    max_gallery: int = 60,
    title: str | None = None,
) -> Path:
    """Write the report page (layout: module docstring) to ``path``; returns it.

    ``per_sample``: the rows of ``per_sample.jsonl`` (or its path); ``root``: folder of relative
    ground-truth paths (as for :func:`evaluate`).
    """
    rows = list(read_jsonl(per_sample)) if isinstance(per_sample, (str, os.PathLike)) else list(per_sample)
    recs = {} if "video" in metrics else _records_by_key(pred_path, gt_path, root)
    gts = recs.pop(None, {})
    series, empty = {}, {}
    for kind, name in (("coarse", "raw"), ("refined", "refined")):
        scored = [r for r in rows if _iou(r, kind) is not None]
        series[name] = [_iou(r, kind) for r in scored if not _correct_empty(r, kind)]
        empty[name] = sum(_correct_empty(r, kind) for r in scored)
    ordered = sorted(rows, key=_worst_first)
    rank = {id(r): i for i, r in enumerate(ordered, 1)}
    sections = []
    for heading, picked in _gallery(ordered, max(0, int(max_gallery))):
        cards = []
        for row in picked:
            key = (str(row["id"]), int(row.get("turn", 0)))
            if key in recs:
                line, rec = recs[key]
                cards.append(_card(rec, row, gts.get(key), rank[id(row)], line))
        if cards:
            sections.append(f'<h3>{html.escape(heading)}</h3><div class="gallery">{"".join(cards)}</div>')
    title = title or f"text4seg evaluation — {Path(pred_path).name}"
    shown = sum(s.count('<div class="card"') for s in sections)
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
        f'<div class="sub">predictions {html.escape(str(pred_path))}<br>ground truth '
        f"{html.escape(str(gt_path))}</div><h2>Metrics</h2>"
        f'<div class="sub">hover a name for its key in metrics.json (also in small print)</div>'
        f'<div class="tables">{_metrics_table(metrics)}</div>'
        f"<h2>Per-sample IoU</h2>{_svg_histogram(series, empty)}"
        f'<div class="sub">correct empty answers: no target, and the answer named none (IoU 1 by '
        f"convention), counted apart from the real hits of the [0.9, 1] bar</div>"
        f"<h2>Gallery ({shown} of {len(rows)} samples; #rank from the worst)</h2>"
        f'<div class="sub">coloured fill, stripes and outline: the answer; yellow outline: ground truth; '
        f"dashed yellow frame: no target; faint lines: the answer's grid cells</div>"
        f"{''.join(sections)}"
        f'<script type="application/json" id="metrics">{html.escape(json.dumps(metrics))}</script>'
        "</body></html>"
    )
    path = Path(path)
    with AtomicWriter(path) as wr:
        wr.write(page)
    return path
