"""Merging ms-swift 2.x LoRA adapters (the released Text4Seg Tables 1-3 adapters) into their base model.

:func:`merge_swift2_lora`: PEFT LoRA adapters (``adapter_model.safetensors`` with keys
``base_model.model.<module>.lora_{A,B}.weight``, module names of transformers 4.x) merged into a base model in
order (the GRES adapters sit on the RES-merged model): ``W += scale * B @ A`` on the base's own tensors, each
adapter module matched to a base ``<module>.weight`` whatever transformers version spelled either
(:func:`canonical_module`). Today's PEFT, given such an adapter, drops the LoRA of modules it cannot place
with a warning only; here every LoRA tensor is used or the merge fails naming the rest.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from text4seg._lazy import require
from text4seg.checkpoints.weights import atomic_folder, few, load_tensors, read_json, save_tensors

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
            f"{where}: {len(bad)} tensor(s) are not LoRA A/B weights (not supported): {few(bad)}"
        )
    half = [m for m, ab in mods.items() if len(ab) != 2]
    if half:
        raise ValueError(f"{where}: LoRA module(s) with only one of A/B: {few(half)}")
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
            f"{few(unused)}"
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
