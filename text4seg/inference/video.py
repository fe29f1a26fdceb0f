"""Video prediction: sample T frames, ask the model once, decode one mask per frame, fill the rest.

Steps (:func:`predict_video`): list the frames (a frame folder, or a video file decoded with PyAV into
``out/frames/<video>/``), sample T of them (:func:`text4seg.data.video.sample_frames`), send them as one
multi-image request (``Frame k: <image>`` lines + the question), parse the ``Frame k:`` answer
(:func:`text4seg.descriptors.video.decode_frames`), then fill every frame:

* ``sam2``: SAM 2's video predictor (the optional ``sam2`` package plus ``--sam2-checkpoint`` and
  ``--sam2-config``), seeded with the decoded mask of each sampled frame, propagated forward and backward;
* ``nearest``: otherwise, each sampled frame's mask (refined by SAM when a SAM checkpoint is given), and
  every other frame takes the mask of its nearest sampled frame (ties: the earlier).

The path taken is printed and stored in the record. Output under ``out``: ``Annotations/<video>/
<expression_id>/<frame>.png`` (0/255 single-channel PNGs, one per frame: the Ref-YouTube-VOS and MeViS
submission layout), ``overlays/<video>_<expression_id>.gif`` (the frames with the mask in red) and one
JSON line per (video, expression) in ``video_results.jsonl``: ``{"id", "video", "expression_id",
"query", "answer", "frames": [names], "sampled": [indices], "propagation", "repairs", "masks": [COCO RLE
per frame]}``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from text4seg._lazy import require
from text4seg.data.jsonl import AtomicWriter
from text4seg.data.video import extract_frames, frame_tags, image_change, list_frames, sample_frames
from text4seg.descriptors import grid_to_label_map
from text4seg.descriptors.video import decode_frames

VIDEO_RESULTS = "video_results.jsonl"
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def video_frames(source: str | os.PathLike, out_dir: str | os.PathLike) -> tuple[str, list[Path]]:
    """(video name, frame paths) of a frame folder or a video file (decoded into ``out_dir/frames``)."""
    src = Path(source)
    if src.is_dir():
        return src.name, list_frames(src)
    if src.suffix.lower() in VIDEO_EXTS and src.is_file():
        return src.stem, extract_frames(src, Path(out_dir) / "frames" / src.stem)
    raise OSError(f"--video {src}: not a frame folder or a video file ({', '.join(VIDEO_EXTS)})")


def check_expression_id(expression_id: str) -> str:
    """``expression_id`` if it is one folder name (it becomes ``Annotations/<video>/<expression_id>/``)."""
    name = str(expression_id)
    if not name or name in (".", "..") or "/" in name or os.sep in name or "\0" in name:
        raise ValueError(f"--expression-id {name!r}: expected one folder name (no '/', not '..')")
    return name


def check_video_out(out: str | os.PathLike, video: str, expression_id: str) -> Path:
    """Create ``out`` and check every folder and file a video prediction writes there (no link, no
    foreign kind; :func:`text4seg.inference.outdir.check_out_dir`), level by level."""
    from text4seg.inference.outdir import check_out_dir

    check_expression_id(expression_id)
    out = check_out_dir(out, files=[VIDEO_RESULTS], folders=["Annotations", "overlays", "frames"])
    check_out_dir(out / "Annotations", folders=[video])
    check_out_dir(out / "Annotations" / video, folders=[expression_id])
    if (out / "frames").is_dir():  # a decoded video file's frames go to frames/<video>/
        check_out_dir(out / "frames", folders=[video])
    return out


def fill_nearest(keyed: dict[int, np.ndarray], n_frames: int) -> list[np.ndarray]:
    """Masks for frames ``0..n_frames-1``: each the mask of the nearest key in ``keyed`` (ties: earlier)."""
    keys = np.array(sorted(keyed))
    return [keyed[int(keys[np.argmin(np.abs(keys - t))])] for t in range(n_frames)]


def propagate_sam2(
    frames: Sequence[Path], keyed: dict[int, np.ndarray], checkpoint, config: str, device: str | None = None
) -> list[np.ndarray]:
    """SAM 2 video propagation seeded with ``keyed`` masks (frames must be JPEGs named by integers)."""
    build = require("sam2.build_sam")
    torch = require("torch")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    pred = build.build_sam2_video_predictor(config, str(checkpoint), device=device)
    h, w = next(iter(keyed.values())).shape
    out = [np.zeros((h, w), bool) for _ in frames]
    with torch.inference_mode():
        state = pred.init_state(video_path=str(Path(frames[0]).parent))
        for t, m in sorted(keyed.items()):
            if m.any():
                pred.add_new_mask(state, frame_idx=t, obj_id=1, mask=m)
        if not any(m.any() for m in keyed.values()):
            return out
        for reverse in (False, True):
            for t, _, logits in pred.propagate_in_video(state, reverse=reverse):
                if t not in keyed:
                    out[t] = (logits[0, 0] > 0).cpu().numpy()
    for t, m in keyed.items():
        out[t] = m
    return out


def decode_video_answer(
    text: str, frames: Sequence[Path], sampled: Sequence[int], grid, scheme: str, form: str, refiner=None
) -> tuple[dict[int, np.ndarray], list]:
    """``({frame index: (H, W) bool mask}, repairs)`` of an answer about the ``sampled`` frames."""
    from text4seg.data.images import image_size

    w, h = image_size(frames[0])
    dec = decode_frames(text, len(sampled), grid, scheme, form)
    keyed = {}
    for t, g in zip(sampled, dec.grids):
        label_map, _ = grid_to_label_map(g, h, w)
        if refiner is not None and label_map.any():
            label_map = refiner.refine_label_map(str(frames[t]), label_map, key=str(frames[t]))
        keyed[t] = label_map > 0
    return keyed, [f"{'-' if k is None else k + 1}:{r.kind}" for k, r in dec.repairs]


def save_gif(path: Path, frames: Sequence[Path], masks: Sequence[np.ndarray], ms: int = 200) -> None:
    """An animated GIF: each frame with its mask tinted red (written through a temporary file)."""
    from PIL import Image

    from text4seg.data.images import load_rgb

    images = []
    for f, m in zip(frames, masks):
        arr = np.asarray(load_rgb(f), dtype=np.float32)
        arr[m] = 0.45 * arr[m] + 0.55 * np.array([255, 0, 0], np.float32)
        images.append(Image.fromarray(arr.astype(np.uint8)))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.gif")
    images[0].save(tmp, save_all=True, append_images=images[1:], duration=ms, loop=0)
    os.replace(tmp, path)


def write_outputs(
    out_dir: Path, video: str, expression_id: str, frames: Sequence[Path], masks: Sequence[np.ndarray]
) -> Path:
    """The submission PNGs ``Annotations/<video>/<expression_id>/<frame>.png`` and the overlay GIF."""
    from PIL import Image

    ann = Path(out_dir) / "Annotations" / video / expression_id
    ann.mkdir(parents=True, exist_ok=True)
    for f, m in zip(frames, masks):
        tmp = ann / f".{Path(f).stem}.tmp.png"
        Image.fromarray(m.astype(np.uint8) * 255, mode="L").save(tmp)
        os.replace(tmp, ann / f"{Path(f).stem}.png")
    gif = Path(out_dir) / "overlays" / f"{video}_{expression_id}.gif"
    save_gif(gif, frames, masks)
    return gif


def generate_video(predictor, frames: Sequence[Path], question: str, max_new_tokens: int) -> str:
    """One greedy answer of ``predictor`` (:class:`text4seg.inference.predict.Predictor`) to T frames."""
    from text4seg.inference.engine import infer

    content = frame_tags(len(frames)) + question
    return infer(predictor.engine, [(content, [str(f) for f in frames])], max_new_tokens)[0][0]


def predict_video(
    predictor,
    source: str | os.PathLike,
    question: str,
    out_dir: str | os.PathLike,
    *,
    expression_id: str = "0",
    n_frames: int = 8,
    sampling: str = "uniform",
    grid=16,
    scheme: str = "rrle",
    form: str = "frames",
    max_new_tokens: int | None = None,
    sam2_checkpoint: str | os.PathLike | None = None,
    sam2_config: str | None = None,
    answer: str | None = None,
    log=print,
) -> dict:
    """Predict one (video, question): writes the outputs (module docstring) and returns the record.

    ``answer``: use this text instead of asking ``predictor`` (``predictor`` may then be None).
    """
    from text4seg.data.rle import mask_to_rle
    from text4seg.descriptors import grid_shape, max_answer_tokens

    video = Path(source).stem if Path(source).is_file() else Path(source).name
    out = check_video_out(out_dir, video, expression_id)
    video, frames = video_frames(source, out)
    change = image_change(frames) if sampling == "keyframe" else None
    sampled = sample_frames(len(frames), n_frames, sampling, change)
    if answer is None:
        if max_new_tokens is None:
            max_new_tokens = len(sampled) * (max_answer_tokens(scheme, grid_shape(grid)) + 8)
        answer = generate_video(predictor, [frames[i] for i in sampled], question, max_new_tokens)
    refiner = getattr(predictor, "refiner", None)
    use_sam2 = sam2_checkpoint is not None and sam2_config is not None
    keyed, repairs = decode_video_answer(
        answer, frames, sampled, grid, scheme, form, None if use_sam2 else refiner
    )
    if use_sam2:
        how = "sam2: SAM 2 video predictor seeded with the decoded masks"
        masks = propagate_sam2(frames, keyed, sam2_checkpoint, sam2_config)
    else:
        why = "no --sam2-checkpoint/--sam2-config" if sam2_checkpoint is None or not sam2_config else ""
        refined = "SAM-refined" if refiner is not None else "unrefined"
        how = f"nearest: {refined} sampled frames, nearest-keyframe fill ({why or 'sam2 not used'})"
        masks = fill_nearest(keyed, len(frames))
    log(f"propagation: {how}")
    write_outputs(out, video, expression_id, frames, masks)
    rec = {
        "id": f"{video}/{expression_id}",
        "video": video,
        "expression_id": expression_id,
        "query": question,
        "answer": answer,
        "frames": [Path(f).stem for f in frames],
        "sampled": list(sampled),
        "propagation": how.split(":", 1)[0],
        "repairs": repairs,
        "masks": [mask_to_rle(m) for m in masks],
    }
    results = out / VIDEO_RESULTS
    old = results.read_text(encoding="utf-8").splitlines() if results.is_file() else []
    keep = [ln for ln in old if ln.strip() and json.loads(ln).get("id") != rec["id"]]
    with AtomicWriter(results) as w:
        for ln in keep:
            w.write(ln)
        w.write(json.dumps(rec, ensure_ascii=False))
    return rec
