"""The demo's configuration: data, model and prediction knobs (:class:`DemoConfig`) and its two presets.

The training arguments are not here: they are the recipe ``recipes/demo.yaml`` (flat ms-swift
arguments, loaded by :func:`text4seg.training.recipe_file.load_recipe`); a run fills in its paths, seed and
steps as overrides (:func:`text4seg.demo.train.demo_recipe`). :data:`FULL` is ``text4seg demo``;
:data:`QUICK` (``--quick``) exercises every stage in about a minute.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from text4seg.training.recipe_file import RECIPES_DIR

FIXED_QUESTION = "Segment {label}."
FIXED_ANSWER = "Here is the mask."
DEMO_COLORS = ("red", "green", "blue", "yellow", "purple", "orange")


DEMO_RECIPE = RECIPES_DIR / "demo.yaml"
GRPO_RECIPE = RECIPES_DIR / "grpo_demo.yaml"


@dataclass
class DemoConfig:
    """Every knob of the demo except the training arguments (those are the recipe's).

    ``steps``: training steps (``None``: the recipe's ``max_steps``); ``seed``: seed of data, weights
    and training (overrides the recipe's ``seed``); ``swift_overrides``: more recipe overrides.
    """

    scheme: str = "full"
    image_size: int = 64
    patch_size: int = 4
    grid: int = 16
    num_train: int = 8000
    num_val: int = 100
    num_test: int = 200
    colors: tuple[str, ...] = DEMO_COLORS
    shapes: tuple[str, ...] = ("circle",)
    min_shapes: int = 1
    max_shapes: int = 2
    absent_rate: float = 0.25
    multi_rate: float = 0.0
    fixed_prompts: bool = True
    # model (text4seg.demo.model.make_tiny_llava)
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    vision_hidden: int = 128
    vision_layers: int = 1
    vision_heads: int = 4
    vision_feature_layer: int = 0
    rope_theta: float = 1000.0
    bpe_vocab: int = 400
    # training (the rest is the recipe)
    recipe: str = str(DEMO_RECIPE)
    steps: int | None = None
    seed: int = 0
    swift_overrides: dict[str, Any] = field(default_factory=dict)
    # prediction
    predict_batch: int = 50
    overlays: int = 12
    biases: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)  # label-bias grid, picked on val by gIoU
    constrained_biases: tuple[float, ...] = (0.0, 1.0)  # the same for constrained decoding
    constrained_val: int = 50  # val rows for the constrained sweep (the grammar is slow in Python)
    # reinforcement stage (--rl; text4seg.demo.rl): GRPO recipe, steps, rows (a quarter absent targets)
    rl_recipe: str = str(GRPO_RECIPE)
    rl_steps: int = 280
    rl_rows: int = 800
    rl_absent_fraction: float = 0.25
    rl_overrides: dict[str, Any] = field(default_factory=dict)

    def builder_options(self, split: str) -> dict[str, Any]:
        """Options of the synthetic builder for ``split`` (``train``, ``val`` or ``test``)."""
        n = {"train": self.num_train, "val": self.num_val, "test": self.num_test}[split]
        return {
            "image_size": self.image_size,
            "num_images": n,
            "min_shapes": self.min_shapes,
            "max_shapes": self.max_shapes,
            "colors": list(self.colors),
            "shapes": list(self.shapes),
            "absent_rate": self.absent_rate,
            "multi_rate": self.multi_rate,
            "semantic_rate": 0.0,
        }

    def model_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`text4seg.demo.model.make_tiny_llava` for this configuration."""
        return {
            "seed": self.seed,
            "image_size": self.image_size,
            "patch_size": self.patch_size,
            "vocab": self.bpe_vocab,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "intermediate_size": 2 * self.hidden_size,
            "vision_hidden_size": self.vision_hidden,
            "vision_layers": self.vision_layers,
            "vision_heads": self.vision_heads,
            "vision_intermediate_size": 2 * self.vision_hidden,
            "vision_feature_layer": self.vision_feature_layer,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": 8192,
            "image_mean": (0.5, 0.5, 0.5),
            "image_std": (0.5, 0.5, 0.5),
        }


FULL = DemoConfig()
QUICK = replace(
    FULL,
    num_train=48,
    num_val=4,
    num_test=6,
    steps=4,
    swift_overrides={"per_device_train_batch_size": 4},
    hidden_size=64,
    num_layers=1,
    vision_hidden=32,
    predict_batch=12,
    overlays=4,
    biases=(0.0,),
    constrained_biases=(0.0,),
    rl_steps=2,
    rl_rows=8,
    rl_overrides={"per_device_train_batch_size": 4, "num_generations": 2, "max_completion_length": 32},
)
