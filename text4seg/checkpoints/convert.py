"""Converting the released Text4Seg checkpoints to what the current stack loads (transformers 5.x).

Two converters, both offline, both refusing (one ``ValueError`` naming the tensors) to leave any source
tensor unused:

* :func:`convert_llava_original`: a model in the ORIGINAL LLaVA layout (``llava_llama``: a Llama/Vicuna
  language model whose keys are ``model.layers.*``, an ``mlp2x_gelu`` projector ``model.mm_projector.{0,2}``,
  optionally the CLIP tower under ``model.vision_tower.vision_tower.*``) -> a llava-hf folder
  (``LlavaForConditionalGeneration``: ``model.language_model.*``,
  ``model.multi_modal_projector.linear_{1,2}``, ``model.vision_tower.*``), with the tokenizer extended by
  ``<image>`` and ``<pad>`` (the embedding and
  the LM head padded to a multiple of 64 rows, new rows = the mean of the old ones) and a processor
  (the CLIP tower's image processor, ``patch_size``, the "default" feature strategy: layer -2 without CLS).
* :func:`merge_swift2_lora`: ms-swift 2.x PEFT LoRA adapters (``adapter_model.safetensors`` with keys
  ``base_model.model.<module>.lora_{A,B}.weight``, module names of transformers 4.x) merged into a base
  model in order (the GRES adapters sit on the RES-merged model): ``W += scale * B @ A`` on the base's own
  tensors, each adapter module matched to a base ``<module>.weight`` whatever transformers version spelled
  either (:func:`canonical_module`). Today's PEFT, given such an adapter, drops the LoRA of modules it
  cannot place with a warning only; here every LoRA tensor is used or the merge fails.

Outputs are written to a temporary sibling folder and renamed at the end: the target is absent or complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from text4seg._lazy import require

# original LLaVA key prefix -> llava-hf (transformers 5.x) key prefix; the first match wins
# (transformers 5's CLIPVisionModel dropped the ``vision_model.`` level its 4.x checkpoints carry)
LLAVA_ORIGINAL_TO_HF: tuple[tuple[str, str], ...] = (
    ("model.vision_tower.vision_tower.vision_model.", "model.vision_tower."),
    ("model.vision_tower.vision_tower.", "model.vision_tower."),
    ("model.mm_projector.0.", "model.multi_modal_projector.linear_1."),
    ("model.mm_projector.2.", "model.multi_modal_projector.linear_2."),
    ("model.embed_tokens.", "model.language_model.embed_tokens."),
    ("model.layers.", "model.language_model.layers."),
    ("model.norm.", "model.language_model.norm."),
    ("lm_head.", "lm_head."),
)
# buffers an original checkpoint may carry that the llava-hf model recomputes (rotary frequencies, CLIP
# position ids): dropped on purpose, by suffix
DROPPED_BUFFERS: tuple[str, ...] = (".rotary_emb.inv_freq", "embeddings.position_ids")
# spellings of one llava-hf module across transformers versions and save formats -> transformers 5's own
# name (ms-swift 2.x adapters name 4.x modules; a 5.x save_pretrained writes yet another spelling); the
# first match wins
LLAVA_HF_CANONICAL: tuple[tuple[str, str], ...] = (
    ("language_model.model.", "model.language_model."),
    ("language_model.lm_head.", "lm_head."),
    ("model.vision_tower.vision_model.", "model.vision_tower."),
    ("vision_tower.vision_model.", "model.vision_tower."),
    ("vision_tower.", "model.vision_tower."),
    ("multi_modal_projector.", "model.multi_modal_projector."),
)
IMAGE_TOKEN = "<image>"
PAD_TOKEN = "<pad>"
PAD_MULTIPLE = 64
SHARD_BYTES = 4 * 2**30


# ----------------------------------------------------------------------------------------------- files
def weight_files(folder: Path) -> list[Path]:
    """The weight files of a model/adapter folder: ``*.safetensors`` if any, else ``*.bin``; ``ValueError``
    when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    files = [f for f in files if f.name not in ("training_args.bin", "optimizer.bin", "scheduler.bin")]
    if not files:
        raise ValueError(f"{folder}: no *.safetensors or *.bin weight file")
    return files


def load_tensors(folder: Path) -> dict[str, Any]:
    """Every tensor of ``folder``'s weight files (safetensors memory-mapped; ``.bin`` read with
    ``weights_only=True``); a key found twice or an unreadable file is a ``ValueError`` naming the file."""
    torch = require("torch")
    st = require("safetensors.torch")
    out: dict[str, Any] = {}
    for f in weight_files(folder):
        try:
            part = (
                st.load_file(str(f))
                if f.suffix == ".safetensors"
                else torch.load(f, map_location="cpu", weights_only=True, mmap=True)
            )
        except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
            raise ValueError(f"{f}: cannot read the weights ({type(exc).__name__}: {exc})") from None
        if not isinstance(part, dict):
            raise ValueError(f"{f}: not a state dict (a {type(part).__name__})")
        for k, v in part.items():
            if not isinstance(v, torch.Tensor):
                raise ValueError(f"{f}: entry {k!r} is not a tensor")
            if k in out:
                raise ValueError(f"{f}: tensor {k!r} appears in two weight files")
            out[k] = v
    return out


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path`` (``ValueError`` naming the file when it is not one)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


@contextmanager
def atomic_folder(out: Path) -> Iterator[Path]:
    """A temporary sibling folder of ``out``, renamed onto ``out`` when the block ends without error and
    removed otherwise. ``out`` must not exist (a conversion never overwrites a model)."""
    out = Path(out)
    if out.exists() or out.is_symlink():
        raise ValueError(f"{out}: already exists (choose a new --out folder)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def save_tensors(tensors: dict[str, Any], folder: Path, shard_bytes: int = SHARD_BYTES) -> list[str]:
    """Write ``tensors`` as ``model.safetensors`` or shards plus ``model.safetensors.index.json``."""
    st = require("safetensors.torch")
    shards: list[dict[str, Any]] = [{}]
    size = 0
    for k in sorted(tensors):
        t = tensors[k].contiguous()
        n = t.numel() * t.element_size()
        if shards[-1] and size + n > shard_bytes:
            shards.append({})
            size = 0
        shards[-1][k] = t
        size += n
    if len(shards) == 1:
        st.save_file(shards[0], str(folder / "model.safetensors"), metadata={"format": "pt"})
        return ["model.safetensors"]
    names, weight_map, total = [], {}, 0
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        st.save_file(shard, str(folder / name), metadata={"format": "pt"})
        names.append(name)
        for k, t in shard.items():
            weight_map[k] = name
            total += t.numel() * t.element_size()
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return names


# ------------------------------------------------------------------------------ original LLaVA -> hf
def map_llava_original_key(key: str) -> str | None:
    """The llava-hf name of an original-LLaVA tensor; ``""`` for a buffer dropped on purpose; ``None``
    when the key has no mapping."""
    if key.endswith(DROPPED_BUFFERS):
        return ""
    for old, new in LLAVA_ORIGINAL_TO_HF:
        if key.startswith(old):
            return new + key[len(old) :]
    return None


def map_llava_original(tensors: dict[str, Any], where: str) -> dict[str, Any]:
    """Rename every tensor by :func:`map_llava_original_key`; ``ValueError`` listing the unmapped ones."""
    out, unmapped = {}, []
    for k, v in tensors.items():
        new = map_llava_original_key(k)
        if new is None:
            unmapped.append(k)
        elif new:
            out[new] = v
    if unmapped:
        raise ValueError(f"{where}: {len(unmapped)} source tensor(s) have no llava-hf name: {_few(unmapped)}")
    return out


def _few(names: Sequence[str], n: int = 6) -> str:
    names = sorted(names)
    more = f" ... (+{len(names) - n} more)" if len(names) > n else ""
    return ", ".join(repr(x) for x in names[:n]) + more


def llava_hf_config(
    src_cfg: dict[str, Any], vision_cfg: dict[str, Any], image_token_id: int, pad_id: int, vocab: int
):
    """A ``LlavaConfig`` from an original LLaVA ``config.json`` and the CLIP tower's ``config.json``."""
    transformers = require("transformers")
    where = "config.json"
    projector = src_cfg.get("mm_projector_type", "linear")
    if projector != "mlp2x_gelu":
        raise ValueError(f"{where}: mm_projector_type {projector!r} is not supported (only 'mlp2x_gelu')")
    select = src_cfg.get("mm_vision_select_feature", "patch")
    if select not in ("patch", "cls_patch"):
        raise ValueError(f"{where}: mm_vision_select_feature {select!r} not in ['patch', 'cls_patch']")
    if src_cfg.get("mm_patch_merge_type", "flat") != "flat":
        raise ValueError(f"{where}: mm_patch_merge_type {src_cfg['mm_patch_merge_type']!r} is not 'flat'")
    text = transformers.LlamaConfig(
        **{
            k: src_cfg[k]
            for k in (
                "hidden_size",
                "intermediate_size",
                "num_hidden_layers",
                "num_attention_heads",
                "num_key_value_heads",
                "max_position_embeddings",
                "rms_norm_eps",
                "hidden_act",
                "rope_theta",
                "rope_scaling",
                "attention_bias",
                "tie_word_embeddings",
                "bos_token_id",
                "eos_token_id",
            )
            if src_cfg.get(k) is not None
        },
        vocab_size=vocab,
        pad_token_id=pad_id,
    )
    vc = vision_cfg.get("vision_config", vision_cfg)  # a CLIPModel folder nests it
    vision = transformers.CLIPVisionConfig(
        **{k: v for k, v in vc.items() if k not in ("architectures", "model_type", "transformers_version")}
    )
    return transformers.LlavaConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=image_token_id,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default" if select == "patch" else "full",
        vision_feature_layer=int(src_cfg.get("mm_vision_select_layer", -2)),
        multimodal_projector_bias=True,
        tie_word_embeddings=bool(src_cfg.get("tie_word_embeddings", False)),
    )


def pad_rows(weight: Any, rows: int) -> Any:
    """``weight`` with rows appended up to ``rows``, each the mean of the existing rows (the mean of the
    distribution the old llava-hf conversion sampled new token embeddings from; deterministic here)."""
    torch = require("torch")
    if weight.shape[0] >= rows:
        return weight
    mean = weight.float().mean(0, keepdim=True).to(weight.dtype)
    return torch.cat([weight, mean.expand(rows - weight.shape[0], -1)], 0)


CLIP_VISION_PARTS = ("embeddings.", "pre_layrnorm.", "encoder.", "post_layernorm.")


def _vision_tensors(vision_tower: Path) -> dict[str, Any]:
    """The CLIP tower's vision tensors under llava-hf names (``model.vision_tower.*``): ``vision_model.*``
    of a CLIPModel / 4.x CLIPVisionModel folder, or the bare keys of a 5.x CLIPVisionModel; the text tower
    and projections of a CLIPModel are not part of LLaVA and are skipped."""
    out = {}
    for k, v in load_tensors(vision_tower).items():
        name = k.removeprefix("vision_model.")
        if name.startswith(CLIP_VISION_PARTS) and not k.endswith(DROPPED_BUFFERS):
            out["model.vision_tower." + name] = v
    if not out:
        raise ValueError(
            f"{vision_tower}: no CLIP vision tensors ('vision_model.*'); is it a CLIP model folder?"
        )
    return out


def _expected_keys(config: Any) -> set[str]:
    """The state-dict keys of ``LlavaForConditionalGeneration(config)`` (built on the meta device)."""
    torch = require("torch")
    transformers = require("transformers")
    with torch.device("meta"):
        model = transformers.LlavaForConditionalGeneration(config)
    keys = set(model.state_dict())
    if config.tie_word_embeddings:
        keys.discard("lm_head.weight")
    return keys


def convert_llava_original(
    src: Path, out: Path, vision_tower: Path, dtype: str | None = None, log: Callable[[str], None] = print
) -> Path:
    """Convert an original-LLaVA folder ``src`` to a llava-hf folder ``out`` (see the module docstring).

    ``vision_tower``: the local CLIP folder the checkpoint was built on (``mm_vision_tower``, e.g. a
    download of openai/clip-vit-large-patch14-336): its ``config.json`` gives the tower's shape, its
    ``preprocessor_config.json`` the image processor, and its weights fill the tower when ``src`` does not
    carry one. ``dtype``: cast floating tensors (``float16``/``bfloat16``/``float32``); default keep.
    """
    transformers = require("transformers")
    torch = require("torch")
    src, vision_tower = Path(src), Path(vision_tower)
    src_cfg = read_json(src / "config.json")
    mt = src_cfg.get("model_type")
    if mt not in ("llava_llama", "llava"):
        raise ValueError(f"{src / 'config.json'}: model_type {mt!r} is not an original LLaVA ('llava_llama')")
    if mt == "llava" and "text_config" in src_cfg:
        raise ValueError(
            f"{src / 'config.json'}: already a llava-hf model (has text_config); nothing to convert"
        )
    vision_cfg = read_json(vision_tower / "config.json")
    tensors = map_llava_original(load_tensors(src), str(src))
    if not any(k.startswith("model.vision_tower.") for k in tensors):
        log(f"convert: {src} has no vision tower; taking it from {vision_tower}")
        tensors.update(_vision_tensors(vision_tower))

    tokenizer = _llava_tokenizer(src)
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    pad_id = tokenizer.convert_tokens_to_ids(PAD_TOKEN)
    rows = -(-len(tokenizer) // PAD_MULTIPLE) * PAD_MULTIPLE
    for name in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
        if name in tensors:
            tensors[name] = pad_rows(tensors[name], rows)
    config = llava_hf_config(src_cfg, vision_cfg, image_id, pad_id, rows)
    expected = _expected_keys(config)
    missing, extra = expected - set(tensors), set(tensors) - expected
    if extra:
        raise ValueError(
            f"{src}: {len(extra)} mapped tensor(s) have no place in the llava-hf model: {_few(extra)}"
        )
    if missing:
        raise ValueError(f"{src}: the llava-hf model needs tensor(s) the source lacks: {_few(missing)}")
    if dtype:
        target = getattr(torch, dtype)
        tensors = {k: (v.to(target) if v.is_floating_point() else v) for k, v in tensors.items()}
        config.dtype = dtype
    else:
        config.dtype = str(next(iter(tensors.values())).dtype).replace("torch.", "")
    processor = transformers.LlavaProcessor(
        image_processor=_clip_image_processor(vision_tower, config.vision_config.image_size),
        tokenizer=tokenizer,
        patch_size=config.vision_config.patch_size,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
        num_additional_image_tokens=1,
    )
    with atomic_folder(out) as tmp:
        config.architectures = ["LlavaForConditionalGeneration"]
        config.save_pretrained(tmp)
        save_tensors(tensors, tmp)
        processor.save_pretrained(tmp)
        gen = src / "generation_config.json"
        if gen.is_file():
            shutil.copyfile(gen, tmp / "generation_config.json")
        (tmp / "text4seg_conversion.json").write_text(
            json.dumps(
                {"from": "llava-original", "source": str(src), "vision_tower": str(vision_tower)}, indent=2
            )
            + "\n"
        )
    log(f"convert: wrote {out} ({len(tensors)} tensors, vocab {len(tokenizer)} padded to {rows})")
    return Path(out)


def _llava_tokenizer(src: Path) -> Any:
    """The source's tokenizer with ``<image>`` (special, not normalised) and ``<pad>`` added."""
    transformers = require("transformers")
    try:
        tok = transformers.AutoTokenizer.from_pretrained(str(src), local_files_only=True)
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"{src}: cannot load the tokenizer ({exc})") from None
    added = transformers.AddedToken(IMAGE_TOKEN, special=True, normalized=False)
    tok.add_tokens([added], special_tokens=True)
    if tok.convert_tokens_to_ids(PAD_TOKEN) in (None, tok.unk_token_id):
        tok.add_special_tokens({"pad_token": PAD_TOKEN})
    else:
        tok.pad_token = PAD_TOKEN
    return tok


def _clip_image_processor(vision_tower: Path, side: int) -> Any:
    """The CLIP tower's image processor (its ``preprocessor_config.json``), else LLaVA-1.5's settings at
    ``side``."""
    transformers = require("transformers")
    if (vision_tower / "preprocessor_config.json").is_file():
        return transformers.CLIPImageProcessor.from_pretrained(str(vision_tower), local_files_only=True)
    from text4seg.checkpoints.align import CLIP_MEAN, CLIP_STD

    return transformers.CLIPImageProcessor(
        size={"shortest_edge": side},
        crop_size={"height": side, "width": side},
        do_center_crop=True,
        resample=3,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )


# ----------------------------------------------------------------------------- ms-swift 2.x LoRA merge
def lora_modules(tensors: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    """``{module: {"A": tensor, "B": tensor}}`` from PEFT adapter keys
    ``base_model.model.<module>.lora_{A,B}[.<adapter>].weight``; any other key, or a module with only one of
    A/B, is a ``ValueError`` naming it."""
    mods: dict[str, dict[str, Any]] = {}
    bad = []
    for k, v in tensors.items():
        name = k.removeprefix("base_model.model.")
        parts = name.split(".")
        if len(parts) >= 3 and parts[-1] == "weight" and parts[-2] in ("lora_A", "lora_B"):
            mod, ab = ".".join(parts[:-2]), parts[-2][-1]
        elif len(parts) >= 4 and parts[-1] == "weight" and parts[-3] in ("lora_A", "lora_B"):
            mod, ab = ".".join(parts[:-3]), parts[-3][-1]  # with an adapter name (".default.weight")
        else:
            bad.append(k)
            continue
        if ab in mods.setdefault(mod, {}):
            raise ValueError(f"{where}: LoRA {ab} of {mod!r} appears twice")
        mods[mod][ab] = v
    if bad:
        raise ValueError(
            f"{where}: {len(bad)} tensor(s) are not LoRA A/B weights (not supported): {_few(bad)}"
        )
    half = [m for m, ab in mods.items() if len(ab) != 2]
    if half:
        raise ValueError(f"{where}: LoRA module(s) with only one of A/B: {_few(half)}")
    return mods


def canonical_module(name: str) -> str:
    """``name`` in transformers 5's spelling (:data:`LLAVA_HF_CANONICAL`); other names unchanged."""
    for old, new in LLAVA_HF_CANONICAL:
        if name.startswith(old):
            return new + name[len(old) :]
    return name


def module_index(base_keys: set[str], where: str) -> dict[str, str]:
    """canonical module name -> the base's own module name, for every ``<module>.weight`` of the base."""
    index: dict[str, str] = {}
    for k in base_keys:
        if k.endswith(".weight"):
            mod = k[: -len(".weight")]
            canon = canonical_module(mod)
            if index.get(canon, mod) != mod:
                raise ValueError(
                    f"{where}: {index[canon]!r} and {mod!r} are the same module in two spellings"
                )
            index[canon] = mod
    return index


def lora_scale(cfg: dict[str, Any], module: str, where: str) -> tuple[int, float]:
    """``(r, scale)`` of ``module`` from an ``adapter_config.json`` (rank/alpha patterns, rsLoRA)."""

    def pick(pattern: dict[str, Any] | None, default):
        for key, value in (pattern or {}).items():
            if module == key or module.endswith("." + key):
                return value
        return default

    r = pick(cfg.get("rank_pattern"), cfg.get("r"))
    alpha = pick(cfg.get("alpha_pattern"), cfg.get("lora_alpha"))
    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
        raise ValueError(f"{where}: r {r!r} for {module!r} is not a positive integer")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool):
        raise ValueError(f"{where}: lora_alpha {alpha!r} for {module!r} is not a number")
    return r, alpha / (r**0.5 if cfg.get("use_rslora") else r)


def check_adapter_config(cfg: dict[str, Any], where: str) -> None:
    """Refuse what a plain ``W += scale * B @ A`` merge cannot reproduce (DoRA, other PEFT types)."""
    if cfg.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"{where}: peft_type {cfg.get('peft_type')!r} is not LORA")
    if cfg.get("use_dora"):
        raise ValueError(f"{where}: use_dora true is not supported (a DoRA adapter is not a plain LoRA)")
    if cfg.get("lora_bias") or cfg.get("bias", "none") != "none":
        raise ValueError(f"{where}: bias {cfg.get('bias')!r} is not supported (only 'none')")


def merge_lora_into(base: dict[str, Any], adapter: Path) -> list[str]:
    """Merge the LoRA adapter folder ``adapter`` into the tensors ``base`` (in place); returns the merged
    module names. Every LoRA module must land on a base weight of matching shape, or ``ValueError`` names
    the unused ones."""
    torch = require("torch")
    adapter = Path(adapter)
    where = str(adapter / "adapter_config.json")
    cfg = read_json(adapter / "adapter_config.json")
    check_adapter_config(cfg, where)
    mods = lora_modules(load_tensors(adapter), str(adapter))
    index = module_index(set(base), "base model")
    placed, unused = {}, []
    for mod in mods:
        target = index.get(canonical_module(mod))
        if target is None:
            unused.append(mod)
        else:
            placed[mod] = target
    if unused:
        raise ValueError(
            f"{adapter}: {len(unused)} LoRA module(s) match no base weight, their tensors would be unused: "
            f"{_few(unused)}"
        )
    fan_in_fan_out = bool(cfg.get("fan_in_fan_out"))
    for mod, target in placed.items():
        w = base[f"{target}.weight"]
        a, b = mods[mod]["A"], mods[mod]["B"]
        r, scale = lora_scale(cfg, mod, where)
        delta = (b.float() @ a.float()) * scale
        if fan_in_fan_out:
            delta = delta.T
        if a.shape[0] != r or tuple(delta.shape) != tuple(w.shape):
            raise ValueError(
                f"{adapter}: LoRA of {mod!r} has A {tuple(a.shape)}, B {tuple(b.shape)} (r {r}), "
                f"which does not fit {target}.weight {tuple(w.shape)}"
            )
        with torch.no_grad():
            base[f"{target}.weight"] = (w.float() + delta).to(w.dtype)
    return sorted(placed.values())


COPIED_SUFFIXES = (".json", ".model", ".txt", ".jinja", ".tiktoken")  # never code (.py)


def merge_swift2_lora(
    adapters: Sequence[Path], base: Path | None, out: Path, log: Callable[[str], None] = print
) -> Path:
    """Merge ``adapters`` in order into ``base`` and write the merged model to ``out``.

    ``base``: the base model folder; default: the first adapter's ``base_model_name_or_path`` when that is
    a local folder. The base's non-weight files (config, tokenizer, processor, chat template) are copied
    unchanged; code files (``*.py``) are not copied: the merged folder runs no remote code.
    """
    if not adapters:
        raise ValueError("no adapter given")
    if base is None:
        cfg = read_json(Path(adapters[0]) / "adapter_config.json")
        named = cfg.get("base_model_name_or_path")
        if not isinstance(named, str) or not Path(named).is_dir():
            raise ValueError(
                f"{adapters[0]}/adapter_config.json: base_model_name_or_path {named!r} is not a local "
                "folder; pass --base"
            )
        base = Path(named)
    base = Path(base)
    tensors = load_tensors(base)
    for adapter in adapters:
        merged = merge_lora_into(tensors, Path(adapter))
        log(f"convert: merged {len(merged)} LoRA modules of {adapter}")
    with atomic_folder(out) as tmp:
        for f in sorted(base.iterdir()):
            if f.is_file() and f.suffix in COPIED_SUFFIXES and not f.name.endswith(".index.json"):
                shutil.copyfile(f, tmp / f.name)
        save_tensors(tensors, tmp)
        (tmp / "text4seg_conversion.json").write_text(
            json.dumps(
                {"from": "swift2-lora", "base": str(base), "adapters": [str(a) for a in adapters]}, indent=2
            )
            + "\n"
        )
    log(f"convert: wrote {out}")
    return Path(out)
