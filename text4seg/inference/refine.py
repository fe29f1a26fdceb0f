"""SAM refinement of coarse text-as-mask masks (Text4Seg paper protocol, geometry done right).

Protocol (per binary coarse mask, ``(H, W)`` bool at the image's original resolution):

1. An empty coarse mask is returned unchanged (nothing to refine).
2. Mask prompt: the coarse mask becomes logits by inverse sigmoid (``logit(1 - eps)`` ~ +6.9 inside,
   ``logit(eps)`` ~ -6.9 outside, ``eps = 1e-3``), placed in SAM's low-resolution mask frame with the
   **same longest-side resize and bottom/right padding SAM applies to the image** (the published code
   stretches the mask to the square frame, ignoring the aspect ratio). The frame size is
   ``sam.prompt_encoder.mask_input_size`` (256x256 for the released ViT-B/L/H, 64x64 for a 256-px tiny
   SAM), never hard-coded. Padding is ``logit(eps)``.
3. Point prompts: ``n_pos`` (10) positive points drawn uniformly from the coarse mask's pixels and
   ``n_neg`` (10) negative points from the rest (with replacement when there are fewer pixels), from
   ``numpy.random.default_rng(seed)`` re-seeded for every mask, so a mask's points do not depend on
   the order of the queries. Coordinates are ``(x, y)`` pixel centres in the original image.
4. ``iterations`` (3) ``SamPredictor.predict`` calls with ``multimask_output=False``: the first with the
   coarse logits as ``mask_input``, each later one with SAM's previous low-res logits.
5. The last call's mask at the original resolution is the refined mask.

Multi-label maps (semantic answers) are refined per label and merged in label order (a later label wins
where two refined masks overlap). The image embedding is computed once per image and kept in a small LRU
cache keyed by ``key`` (the image path by default), so all queries of an image share one encoder pass
(:attr:`Refiner.encoder_passes` counts them).

segment-anything and torch are imported lazily.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict

import numpy as np

from text4seg._lazy import require

SAM_TYPES = ("vit_h", "vit_l", "vit_b")


SAM_PARTS = ("image_encoder.", "prompt_encoder.", "mask_decoder.")  # the key prefixes of a SAM state dict


def load_sam_state(checkpoint: str | os.PathLike, mmap: bool = False) -> dict:
    """The state dict of a SAM checkpoint, read with ``torch.load(weights_only=True)``: a pickle that
    would run code, a file that is not a torch checkpoint, or one that is not a ``{name: tensor}`` dict of
    SAM's parts is a ``ValueError`` naming the file. ``mmap``: map the tensors instead of reading them
    (a cheap check of a zip-format checkpoint; the legacy format is read)."""
    import pickle

    torch = require("torch")
    try:
        try:
            state = torch.load(str(checkpoint), map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as exc:
            if not (mmap and "mmap" in str(exc)):
                raise
            state = torch.load(str(checkpoint), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refused a global, or not a pickle at all
        lines = [ln.strip() for ln in str(exc).splitlines() if "Unpickler error" in ln]
        why = (lines[0] if lines else str(exc).strip().splitlines()[-1] if str(exc).strip() else "")[:160]
        if "global" not in why.lower():
            raise ValueError(f"SAM checkpoint {checkpoint}: not a torch checkpoint ({why})") from None
        raise ValueError(
            f"SAM checkpoint {checkpoint}: refused, it is not a plain state dict (a pickle that would "
            f"import or run code: {why})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, TypeError, AttributeError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise
        why = f"{type(exc).__name__}: {str(exc).strip()[:160]}"
        raise ValueError(f"SAM checkpoint {checkpoint}: not a torch checkpoint ({why})") from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ValueError(
            f"SAM checkpoint {checkpoint}: not a state dict ({{name: tensor}}), got {type(state).__name__}"
        )
    foreign = sorted(k for k in state if not k.startswith(SAM_PARTS))
    if not state or foreign:
        raise ValueError(
            f"SAM checkpoint {checkpoint}: not a SAM state dict (keys start with {', '.join(SAM_PARTS)}; "
            f"got {foreign[:3] or 'none'})"
        )
    return state


def load_sam(checkpoint: str | os.PathLike, sam_type: str = "vit_h", device: str | None = None):
    """A released SAM from its checkpoint (``segment_anything.sam_model_registry``), in eval mode.

    The weights are read by :func:`load_sam_state` (never unpickled as code); a state dict of another
    SAM type or with missing / unexpected / misshaped tensors is a ``ValueError`` naming the file."""
    sa = require("segment_anything")
    if sam_type not in SAM_TYPES:
        raise ValueError(f"unknown SAM type {sam_type!r}; choose one of {SAM_TYPES}")
    if not os.path.isfile(checkpoint):
        raise OSError(f"SAM checkpoint not found: {checkpoint}")
    state = load_sam_state(checkpoint)
    sam = sa.sam_model_registry[sam_type](checkpoint=None)
    try:
        sam.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        why = " ".join(str(exc).split())[:240]
        raise ValueError(f"SAM checkpoint {checkpoint} does not fit SAM {sam_type} ({why})") from None
    if device:
        sam.to(device)
    return sam.eval()


def longest_side_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
    """SAM's ``ResizeLongestSide.get_preprocess_shape``: ``(new_h, new_w)``, longer side = long_side."""
    scale = long_side / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def coarse_logits(mask: np.ndarray, frame: tuple[int, int], eps: float = 1e-3) -> np.ndarray:
    """``(1, fh, fw)`` float32 mask prompt: ``mask`` (``(H, W)`` bool) resized (nearest, longest side =
    ``max(frame)``, aspect kept) into the top-left of the frame, logits ``+-logit(1 - eps)``, padding
    negative."""
    from PIL import Image

    m = np.asarray(mask, bool)
    h, w = m.shape
    nh, nw = longest_side_shape(h, w, max(frame))
    small = np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize((nw, nh), Image.NEAREST)) > 127
    hi = math.log((1 - eps) / eps)
    out = np.full((1, frame[0], frame[1]), -hi, np.float32)
    out[0, :nh, :nw] = np.where(small, hi, -hi)
    return out


def sample_points(mask: np.ndarray, n_pos: int = 10, n_neg: int = 10, seed: int = 0):
    """``(coords (N, 2) float32 as (x, y), labels (N,) int)``: positives from the mask, negatives off it."""
    rng = np.random.default_rng(seed)
    m = np.asarray(mask, bool)
    coords, labels = [], []
    for want, n, lab in ((True, n_pos, 1), (False, n_neg, 0)):
        ys, xs = np.nonzero(m == want)
        if n <= 0 or ys.size == 0:
            continue
        idx = rng.choice(ys.size, size=n, replace=ys.size < n)
        coords.append(np.stack([xs[idx], ys[idx]], axis=1))
        labels.append(np.full(n, lab))
    if not coords:
        return np.zeros((0, 2), np.float32), np.zeros((0,), np.int64)
    return np.concatenate(coords).astype(np.float32), np.concatenate(labels).astype(np.int64)


def _load_rgb(image) -> np.ndarray:
    from text4seg.data.images import load_rgb

    if isinstance(image, np.ndarray):
        arr = image
    elif isinstance(image, (str, os.PathLike)):  # regular files within the pixel limit only
        arr = np.asarray(load_rgb(image))
    else:
        arr = np.asarray(image.convert("RGB"))
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got shape {arr.shape} dtype {arr.dtype}")
    return arr


class Refiner:
    """SAM refinement with a per-image embedding cache.

    Args:
        sam: a ``segment_anything`` ``Sam`` model (see :func:`load_sam`, :func:`make_tiny_sam`).
        n_pos, n_neg: points per mask; iterations: ``predict`` calls (1 + feedback rounds);
        seed: point-sampling seed; eps: inverse-sigmoid margin; cache_size: images kept embedded.
    """

    def __init__(
        self,
        sam,
        *,
        n_pos: int = 10,
        n_neg: int = 10,
        iterations: int = 3,
        seed: int = 0,
        eps: float = 1e-3,
        cache_size: int = 8,
    ):
        sa = require("segment_anything")
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        self.sam = sam
        self.predictor = sa.SamPredictor(sam)
        self.frame = tuple(int(v) for v in sam.prompt_encoder.mask_input_size)
        self.n_pos, self.n_neg, self.iterations, self.seed, self.eps = n_pos, n_neg, iterations, seed, eps
        self.cache_size = cache_size
        self._cache: OrderedDict = OrderedDict()
        self._current = None
        self.encoder_passes = 0
        self.predict_calls = 0

    def set_image(self, image, key=None) -> tuple[int, int]:
        """Embed ``image`` (path, PIL or ``(H, W, 3)`` uint8) unless ``key`` is cached; returns (H, W)."""
        if key is None and isinstance(image, (str, os.PathLike)):
            key = os.fspath(image)
        p = self.predictor
        if key is not None and key == self._current and p.is_image_set:
            return p.original_size
        if key is not None and key in self._cache:
            self._cache.move_to_end(key)
            p.features, p.original_size, p.input_size = self._cache[key]
            p.is_image_set = True
        else:
            p.set_image(_load_rgb(image))
            self.encoder_passes += 1
            if key is not None:
                self._cache[key] = (p.features, p.original_size, p.input_size)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        self._current = key
        return p.original_size

    def refine(self, image, coarse: np.ndarray, key=None) -> np.ndarray:
        """Refined ``(H, W)`` bool mask of one coarse ``(H, W)`` bool mask (empty stays empty)."""
        coarse = np.asarray(coarse, bool)
        if not coarse.any():
            return coarse.copy()
        size = self.set_image(image, key)
        if tuple(size) != coarse.shape:
            raise ValueError(f"coarse mask is {coarse.shape}, image is {tuple(size)}")
        coords, labels = sample_points(coarse, self.n_pos, self.n_neg, self.seed)
        mask_input = coarse_logits(coarse, self.frame, self.eps)
        masks = None
        for _ in range(self.iterations):
            masks, _, low = self.predictor.predict(
                point_coords=coords, point_labels=labels, mask_input=mask_input, multimask_output=False
            )
            self.predict_calls += 1
            mask_input = low[:1]
        return masks[0].astype(bool)

    def refine_label_map(self, image, label_map: np.ndarray, key=None) -> np.ndarray:
        """Refine each label of an ``(H, W)`` int map (0 = background) separately; merge in label order."""
        label_map = np.asarray(label_map)
        out = np.zeros(label_map.shape, np.int32)
        for k in np.unique(label_map).tolist():
            if k == 0:
                continue
            out[self.refine(image, label_map == k, key)] = k
        return out


def load_refiner(sam, sam_type: str = "vit_h") -> Refiner | None:
    """The SAM refiner of a predictor: None for None, a :class:`Refiner` as given, a ``segment_anything``
    ``Sam`` model wrapped, or a checkpoint path (``.pth`` of ``sam_type``) loaded by :func:`load_sam`
    (weights only) and wrapped. Used by every predictor (in-process, API client, video, app)."""
    if sam is None or hasattr(sam, "refine"):
        return sam
    if isinstance(sam, (str, os.PathLike)):
        if not os.path.isfile(sam):
            raise OSError(f"no such SAM checkpoint: {sam}")
        sam = load_sam(sam, sam_type)
    return Refiner(sam)
