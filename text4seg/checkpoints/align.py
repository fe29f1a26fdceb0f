"""Image/grid alignment: the region a processor shows the model must be the whole image the grid describes.

A text4seg answer describes the *whole* image resized to the grid (``mask_to_grid``: nearest resize, no
aspect preservation). A processor that centre-crops (LLaVA-1.5's CLIP processor: short side to 336, then
a 336 x 336 centre crop) shows the model a different region than the answer describes.

- :func:`whole_image_clip` reconfigures a CLIP-style image processor to resize the whole image to its
  crop size (no crop); ``recipes/text4seg_plugin.py`` applies it inside ms-swift.
- :func:`processed_views` runs a processor the way ms-swift's template for ``family`` does and returns what
  the model sees as H x W x 3 float arrays in [0, 1] (patch layouts undone, tiles stitched).
- :func:`probe_image` / :func:`edge_bands` / :func:`check_whole_image` measure the visible region: the probe
  has one coloured band per side, one grid cell thick; the whole image is visible iff every band shows at
  its edge with about its original relative thickness.

``RELEASED`` holds the image-processor settings of the released checkpoints (their
``preprocessor_config.json``), so the checks run offline.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from text4seg._lazy import require

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# family -> (transformers image-processor class, settings of the released checkpoint's preprocessor config)
RELEASED: dict[str, tuple[str, dict[str, Any]]] = {
    # Qwen/Qwen2.5-VL-{3,7}B-Instruct (pixels also capped by the recipes' MAX_PIXELS through qwen-vl-utils)
    "qwen2_5_vl": (
        "Qwen2VLImageProcessor",
        {
            "min_pixels": 3136,
            "max_pixels": 12845056,
            "patch_size": 14,
            "temporal_patch_size": 2,
            "merge_size": 2,
            "image_mean": CLIP_MEAN,
            "image_std": CLIP_STD,
        },
    ),
    # Qwen/Qwen3-VL-8B-Instruct
    "qwen3_vl": (
        "Qwen2VLImageProcessor",
        {
            "size": {"shortest_edge": 65536, "longest_edge": 16777216},
            "patch_size": 16,
            "temporal_patch_size": 2,
            "merge_size": 2,
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
        },
    ),
    # OpenGVLab/InternVL3-8B-hf (ms-swift's internvl_hf template passes crop_to_patches=True)
    "internvl": (
        "GotOcr2ImageProcessor",
        {
            "size": {"height": 448, "width": 448},
            "crop_to_patches": False,
            "min_patches": 1,
            "max_patches": 12,
            "image_mean": [0.485, 0.456, 0.406],
            "image_std": [0.229, 0.224, 0.225],
        },
    ),
    # llava-hf/llava-1.5-{7,13}b-hf: short side -> 336, then a 336 x 336 centre crop
    "llava1_5_hf": (
        "CLIPImageProcessor",
        {
            "size": {"shortest_edge": 336},
            "crop_size": {"height": 336, "width": 336},
            "do_center_crop": True,
            "resample": 3,
            "image_mean": CLIP_MEAN,
            "image_std": CLIP_STD,
        },
    ),
}
# family -> the qwen-vl-utils pixel budget the recipes set (MAX_PIXELS), applied before the processor
RECIPE_MAX_PIXELS: dict[str, int] = {"qwen2_5_vl": 576 * 28 * 28, "qwen3_vl": 576 * 32 * 32}

# probe colours: top, bottom, left, right band; interior
PALETTE = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 0, 0]], dtype=np.float64) / 255


def released_image_processor(family: str) -> Any:
    """The image processor of ``family``'s released checkpoint, built offline from :data:`RELEASED`."""
    if family not in RELEASED:
        raise ValueError(f"family {family!r} not in {sorted(RELEASED)}")
    transformers = require("transformers")
    cls_name, kwargs = RELEASED[family]
    return getattr(transformers, cls_name)(
        **{k: (dict(v) if isinstance(v, dict) else v) for k, v in kwargs.items()}
    )


def crops_image(image_processor: Any) -> bool:
    """True when a CLIP-style processor centre-crops (``do_center_crop`` with a ``shortest_edge`` resize)."""
    if not getattr(image_processor, "do_center_crop", False):
        return False
    size = getattr(image_processor, "size", None) or {}
    get = size.get if isinstance(size, Mapping) else lambda k, d=None: getattr(size, k, d)
    return get("shortest_edge") is not None or get("height") is None


def whole_image_clip(image_processor: Any, side: int | None = None) -> Any:
    """Make a CLIP-style processor resize the whole image to ``side x side`` (default: its crop size).

    Mutates and returns ``image_processor``. A no-op for processors without ``do_center_crop``.
    """
    if not hasattr(image_processor, "do_center_crop"):
        return image_processor
    if side is None:
        crop = getattr(image_processor, "crop_size", None) or {}
        get = crop.get if isinstance(crop, Mapping) else lambda k, d=None: getattr(crop, k, d)
        height, width = get("height"), get("width")
        if height is None:
            size = image_processor.size
            side = size.get("shortest_edge") if isinstance(size, Mapping) else size.shortest_edge
            height = width = side
    else:
        height = width = side
    image_processor.do_center_crop = False
    image_processor.size = {"height": int(height), "width": int(width)}
    return image_processor


def probe_image(width: int, height: int, grid: int = 16) -> Image.Image:
    """An RGB probe: one band per side, ``1/grid`` of the side thick (top red, bottom green, left blue,
    right yellow; top/bottom span the full width), black inside."""
    bh, bw = max(1, round(height / grid)), max(1, round(width / grid))
    a = np.zeros((height, width, 3), np.uint8)
    a[:, :bw] = (0, 0, 255)
    a[:, width - bw :] = (255, 255, 0)
    a[:bh] = (255, 0, 0)
    a[height - bh :] = (0, 255, 0)
    return Image.fromarray(a)


def _unnormalize(chw: np.ndarray, mean, std) -> np.ndarray:
    """C x H x W normalised -> H x W x 3 in [0, 1]."""
    x = chw.astype(np.float64) * np.asarray(std)[:, None, None] + np.asarray(mean)[:, None, None]
    return np.clip(x.transpose(1, 2, 0), 0.0, 1.0)


def processed_views(family: str, image_processor: Any, image: Image.Image) -> list[np.ndarray]:
    """What the model sees of ``image``: H x W x 3 float arrays in [0, 1], processed as ms-swift's template
    for ``family`` does (Qwen: qwen-vl-utils resize with the recipe's pixel budget, then patches -> image;
    InternVL: tiles stitched back, plus the thumbnail; LLaVA: the single 2-D view)."""
    mean, std = image_processor.image_mean, image_processor.image_std
    if family in ("qwen2_5_vl", "qwen3_vl"):
        vision_process = require("qwen_vl_utils.vision_process")
        p, m = image_processor.patch_size, image_processor.merge_size
        budget = RECIPE_MAX_PIXELS[family]
        image = vision_process.fetch_image(
            {"image": image, "max_pixels": budget, "min_pixels": 4 * (p * m) ** 2}, image_patch_size=p
        )
        out = image_processor(images=[image], return_tensors="np")
        flat, (_, gh, gw) = np.asarray(out["pixel_values"]), [int(v) for v in out["image_grid_thw"][0]]
        tp = image_processor.temporal_patch_size
        x = flat.reshape(gh // m, gw // m, m, m, 3, tp, p, p)[:, :, :, :, :, 0]
        chw = x.transpose(4, 0, 2, 5, 1, 3, 6).reshape(3, gh * p, gw * p)
        return [_unnormalize(chw, mean, std)]
    if family == "internvl":
        got = require("transformers.models.got_ocr2.image_processing_got_ocr2")
        out = image_processor(images=[image], crop_to_patches=True, return_tensors="np")
        tiles = np.asarray(out["pixel_values"])
        th, tw = tiles.shape[-2:]
        w, h = image.size
        cols, rows = got.get_optimal_tiled_canvas(
            (h, w), (th, tw), image_processor.min_patches, image_processor.max_patches
        )
        views = []
        if cols * rows > 1:
            grid = tiles[: cols * rows].reshape(rows, cols, 3, th, tw).transpose(2, 0, 3, 1, 4)
            views.append(_unnormalize(grid.reshape(3, rows * th, cols * tw), mean, std))
        views.append(_unnormalize(tiles[-1], mean, std))  # the thumbnail (or the single tile)
        return views
    if family == "llava1_5_hf":
        out = image_processor(images=[image], return_tensors="np")
        return [_unnormalize(np.asarray(out["pixel_values"])[0], mean, std)]
    raise ValueError(f"family {family!r} not in {sorted(RELEASED)}")


def edge_bands(view: np.ndarray) -> dict[str, float]:
    """Relative thickness of each probe band at its edge of ``view`` (H x W x 3 in [0, 1]).

    Measured along the middle column (top/bottom) and middle row (left/right), as a fraction of the side;
    0 when the band does not touch its edge (cropped away or padded over).
    """
    h, w = view.shape[:2]
    colours = np.argmin(((view[:, :, None, :] - PALETTE[None, None]) ** 2).sum(-1), axis=-1)  # H x W index
    col, row = colours[:, w // 2], colours[h // 2, :]

    def run(line: np.ndarray, code: int) -> int:
        n = 0
        for v in line:
            if v != code:
                break
            n += 1
        return n

    return {
        "top": run(col, 0) / h,
        "bottom": run(col[::-1], 1) / h,
        "left": run(row, 2) / w,
        "right": run(row[::-1], 3) / w,
    }


def check_whole_image(
    family: str, image_processor: Any, width: int, height: int, grid: int = 16, tol: float = 0.5
) -> dict[str, float]:
    """Raise ``ValueError`` unless every view of a ``width x height`` probe shows all four bands at about
    ``1/grid`` of the side (relative tolerance ``tol``); returns the smallest measured band per side."""
    views = processed_views(family, image_processor, probe_image(width, height, grid))
    worst: dict[str, float] = {}
    for k, view in enumerate(views):
        bands = edge_bands(view)
        for side, frac in bands.items():
            worst[side] = min(worst.get(side, 1.0), frac)
            if abs(frac * grid - 1.0) > tol:
                raise ValueError(
                    f"{family}: view {k} ({view.shape[1]}x{view.shape[0]}) of a {width}x{height} image shows "
                    f"the {side} band at {frac:.3f} of the side, expected {1 / grid:.3f}: the model does not "
                    f"see the whole image the grid describes (bands {bands})"
                )
    return worst


LLAVA_WHOLE_IMAGE_TEMPLATE = "text4seg_llava1_5_hf"


def register_swift_templates() -> list[str]:
    """Register text4seg's ms-swift templates in this process (idempotent); returns their names.

    ``text4seg_llava1_5_hf``: ms-swift's ``llava1_5_hf`` whose CLIP image processor is switched by
    :func:`whole_image_clip` when the template is built, so training and inference see the whole image;
    and the released models' templates (:func:`register_official_templates`).
    ``recipes/text4seg_plugin.py`` calls this for ``swift sft`` / ``swift export``; before building a
    ``TransformersEngine`` on a model whose ``args.json`` names this template, call
    :func:`text4seg.checkpoints.settings.prepare_engine` (which calls this). Imports ms-swift.
    """
    import dataclasses

    swift_template = require("swift.template")
    llava = require("swift.template.templates.llava")

    class WholeImageLlavaHfTemplate(llava.LlavaHfTemplate):
        """``llava1_5_hf`` with the image processor resizing the whole image (no centre crop)."""

        def init_processor(self, processor) -> None:
            if processor is not None and getattr(processor, "image_processor", None) is not None:
                whole_image_clip(processor.image_processor)
            super().init_processor(processor)

    mapping = swift_template.TEMPLATE_MAPPING
    if LLAVA_WHOLE_IMAGE_TEMPLATE not in mapping:
        meta = dataclasses.replace(
            mapping["llava1_5_hf"],
            template_type=LLAVA_WHOLE_IMAGE_TEMPLATE,
            template_cls=WholeImageLlavaHfTemplate,
        )
        swift_template.register_template(meta)
    return [LLAVA_WHOLE_IMAGE_TEMPLATE, *register_official_templates()]


def whole_image_saved(model_dir: str | Path) -> list[str]:
    """Rewrite a saved model's CLIP image-processor configs to resize the whole image (no centre crop).

    ``swift export`` writes the (whole-image) processor to ``processor_config.json``, which transformers 5
    reads, but copies the base model's ``preprocessor_config.json`` unchanged; tools that read the latter
    would crop. Edits ``preprocessor_config.json`` and the ``image_processor`` entry of
    ``processor_config.json`` where they centre-crop; returns the names of the files changed.
    """
    import json

    changed = []
    for name in ("preprocessor_config.json", "processor_config.json"):
        path = Path(model_dir) / name
        if not path.is_file():
            continue
        cfg = json.loads(path.read_text())
        ip = cfg.get("image_processor", cfg) if name == "processor_config.json" else cfg
        if not isinstance(ip, dict) or not ip.get("do_center_crop"):
            continue
        crop = ip.get("crop_size") or {}
        side = crop.get("height") or (ip.get("size") or {}).get("shortest_edge")
        height, width = crop.get("height", side), crop.get("width", side)
        ip.update({"do_center_crop": False, "size": {"height": int(height), "width": int(width)}})
        path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        changed.append(name)
    return changed


LLAVA_HF_OFFICIAL_TEMPLATE = "text4seg_llava1_5_hf_official"
LLAVA_VICUNA_OFFICIAL_TEMPLATE = "text4seg_llava_vicuna_official"
# every template text4seg registers in ms-swift (the names a --template option may take besides ms-swift's)
PROJECT_TEMPLATES = (LLAVA_WHOLE_IMAGE_TEMPLATE, LLAVA_HF_OFFICIAL_TEMPLATE, LLAVA_VICUNA_OFFICIAL_TEMPLATE)


def register_official_templates() -> list[str]:
    """Register the released Text4Seg models' own templates in ms-swift (idempotent); returns their names.

    * ``text4seg_llava1_5_hf_official``: ms-swift's ``llava1_5_hf`` prompt
      (``USER: <image>\\n{Q}\\nASSISTANT:``) with every image first stretched by PIL (BICUBIC) to the
      processor's side, as the Text4Seg LLaVA-1.5 adapters were trained; then the processor (its resize
      and crop are no-ops on that square).
    * ``text4seg_llava_vicuna_official``: original LLaVA's ``conv_vicuna_v1`` with the Text4Seg-edited system
      prompt (``{system} USER: <image>\\n{Q} ASSISTANT:``), the text tokenised in chunks around the image
      as ``tokenizer_image_token`` did, images stretched with BILINEAR (the evaluation's resize), for a
      model converted by ``text4seg convert llava-original``.

    Strings and settings: :mod:`text4seg.checkpoints.official`. Imports ms-swift.
    """
    import dataclasses

    from text4seg.checkpoints import official

    swift_template = require("swift.template")
    llava = require("swift.template.templates.llava")

    def stretched(template, inputs, resample: str) -> None:
        side = official.processor_side(template.processor.image_processor)
        inputs.images = [official.stretch(im, side, resample) for im in inputs.images]

    class OfficialLlavaHfTemplate(llava.LlavaHfTemplate):
        """``llava1_5_hf`` with images stretched by PIL BICUBIC to the processor's side first."""

        def _encode(self, inputs):
            if inputs.images:
                stretched(self, inputs, official.RESAMPLE["llava1_5_hf"])
            return super()._encode(inputs)

    class OfficialVicunaTemplate(llava.LlavaHfTemplate):
        """``conv_vicuna_v1`` tokenised in chunks around ``<image>``; images stretched BILINEAR."""

        def replace_tag(self, media_type, index, inputs):
            assert media_type == "image"
            return [[self.image_token_index], "\n"]

        def _encode(self, inputs):
            if inputs.images:
                stretched(self, inputs, official.RESAMPLE["llava_original"])
            return super()._encode(inputs)

    mapping = swift_template.TEMPLATE_MAPPING
    if LLAVA_HF_OFFICIAL_TEMPLATE not in mapping:
        swift_template.register_template(
            dataclasses.replace(
                mapping["llava1_5_hf"],
                template_type=LLAVA_HF_OFFICIAL_TEMPLATE,
                template_cls=OfficialLlavaHfTemplate,
            )
        )
    if LLAVA_VICUNA_OFFICIAL_TEMPLATE not in mapping:
        swift_template.register_template(
            dataclasses.replace(
                mapping["llava1_5_hf"],
                template_type=LLAVA_VICUNA_OFFICIAL_TEMPLATE,
                template_cls=OfficialVicunaTemplate,
                prefix=[["bos_token_id"]],
                system_prefix=[["bos_token_id"], "{{SYSTEM}} "],
                prompt=["USER: {{QUERY}} ASSISTANT:"],
                chat_sep=["</s>"],
                suffix=["</s>"],
                default_system=official.vicuna_v1_system(),
            )
        )
    return [LLAVA_HF_OFFICIAL_TEMPLATE, LLAVA_VICUNA_OFFICIAL_TEMPLATE]
