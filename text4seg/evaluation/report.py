"""``text4seg evaluate --report report.html``: one self-contained HTML page to see where a model fails.

The page (no external assets; every picture is an inline ``data:image/png`` URL) has

1. the metrics tables (the dict of :func:`text4seg.evaluation.evaluate.evaluate`: the sample counts,
   strict-parse share and repair counts, then every section present, as the printed table shows it
   (:func:`text4seg.evaluation.scorers.tables`): referring, Ref-ZOM, semantic, multi-expression,
   interactive, panoptic PQ/SQ/RQ, instance (Hungarian), video J/F/J&F; raw and SAM-refined side by side);
2. a histogram of per-sample IoU (an inline SVG; 10 bins of width 0.1, the last one closed: ``[0.9, 1]``),
   raw bars and, when refinement ran, refined bars beside them;
3. a gallery sorted worst first (by the refined IoU when present, else the raw IoU; samples without a
   per-sample IoU, e.g. semantic ones, last): each card is the overlay of
   :func:`text4seg.data.overlay.overlay_image` (the query, one colour per label with a legend, the
   ground-truth outline in yellow, the faint answer grid, coarse and refined side by side), the IoU, the
   answer's first characters and its repairs. ``max_gallery`` caps the cards (the worst ones are kept).

Inputs: the results JSONL (``text4seg predict``/``decode``), the built JSONL (ground truth), the metrics
dict and the per-sample rows that :func:`evaluate` wrote (``per_sample.jsonl``). Written atomically.
"""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Sequence
from pathlib import Path

from text4seg.data.images import load_rgb
from text4seg.data.overlay import overlay_image, png_bytes
from text4seg.data.records import AtomicWriter, read_jsonl
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


def _svg_histogram(series: dict[str, list[float]]) -> str:
    colours = {"raw": "#e63c28", "refined": "#0072b2"}
    hists = {k: iou_histogram(v) for k, v in series.items() if v}
    if not hists:
        return "<p>No per-sample IoU (no referring samples).</p>"
    top = max(max(h) for h in hists.values()) or 1
    w, h, left, bottom = 620, 240, 40, 30
    bw = (w - left - 10) / BINS
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img">']
    parts.append(f'<line x1="{left}" y1="{h - bottom}" x2="{w - 10}" y2="{h - bottom}" stroke="#444"/>')
    for i in range(BINS + 1):
        x = left + i * bw
        parts.append(f'<text x="{x:.1f}" y="{h - bottom + 16}" font-size="11" {MID}>{i / BINS:.1f}</text>')
    parts.append(f'<text x="{left - 6}" y="16" font-size="11" text-anchor="end">{top}</text>')
    parts.append(f'<text x="{(w + left) / 2:.0f}" y="{h - 2}" font-size="12" {MID}>per-sample IoU</text>')
    n = len(hists)
    for j, (kind, counts) in enumerate(hists.items()):
        for i, c in enumerate(counts):
            bh = (h - bottom - 20) * c / top
            x = left + i * bw + 2 + j * (bw - 4) / n
            parts.append(
                f'<rect x="{x:.1f}" y="{h - bottom - bh:.1f}" width="{(bw - 4) / n:.1f}" height="{bh:.1f}" '
                f'fill="{colours.get(kind, "#777")}"><title>{kind} [{i / BINS:.1f}, {(i + 1) / BINS:.1f}): '
                f"{c}</title></rect>"
            )
        parts.append(
            f'<rect x="{w - 110}" y="{8 + 16 * j}" width="12" height="12" '
            f'fill="{colours.get(kind, "#777")}"/>'
            f'<text x="{w - 92}" y="{18 + 16 * j}" font-size="12">{kind} ({sum(counts)})</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


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
            out.append(f"<tr><td>{html.escape(name)}</td>{cells}</tr>")
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
.rp { font-size: 12px; color: #555; }
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
    raw = [v for v in (_iou(r, "coarse") for r in rows) if v is not None]
    ref = [v for v in (_iou(r, "refined") for r in rows) if v is not None]

    def worst_first(r: dict):
        v = _iou(r, "refined")
        v = _iou(r, "coarse") if v is None else v
        return (v is None, 2.0 if v is None else v, str(r["id"]), int(r.get("turn", 0)))

    ordered = sorted(rows, key=worst_first)[: max(0, int(max_gallery))]
    cards = []
    for rank, row in enumerate(ordered, 1):
        key = (str(row["id"]), int(row.get("turn", 0)))
        if key in recs:
            line, rec = recs[key]
            cards.append(_card(rec, row, gts.get(key), rank, line))
    title = title or f"text4seg evaluation — {Path(pred_path).name}"
    shown = f"{len(cards)} of {len(rows)} samples, worst first"
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
        f'<div class="sub">predictions {html.escape(str(pred_path))}<br>ground truth '
        f"{html.escape(str(gt_path))}</div><h2>Metrics</h2>"
        f'<div class="tables">{_metrics_table(metrics)}</div>'
        f"<h2>Per-sample IoU</h2>{_svg_histogram({'raw': raw, 'refined': ref})}"
        f'<h2>Gallery ({shown})</h2><div class="sub">yellow outline: ground truth; faint lines: '
        f"the answer's grid cells</div>"
        f'<div class="gallery">{"".join(cards)}</div>'
        f'<script type="application/json" id="metrics">{html.escape(json.dumps(metrics))}</script>'
        "</body></html>"
    )
    path = Path(path)
    with AtomicWriter(path) as wr:
        wr.write(page)
    return path
