"""One predict run's options: :class:`PredictOptions`, checked once by :meth:`PredictOptions.validate`.

``text4seg predict`` parses its command line into a ``PredictOptions`` and calls
:func:`text4seg.inference.run.run_predict`; ``text4seg app``, the demo and the Python API
(:func:`text4seg.inference.run.predict_to`) build their predictor from one too
(:func:`text4seg.inference.run.make_predictor`). :meth:`~PredictOptions.validate` checks everything
that can be checked before a model loads (and without importing torch, except for a SAM checkpoint's
weights-only read): the path of the run (in-process ``model`` or a server ``api``; a ``jsonl``, an
``image`` or a ``video``), the numbers, ms-swift's names for ``template`` and ``model_type``, the files
named (SAM and SAM 2 checkpoints, LoRA adapters, the video) and that the model folders carry no code
unless ``trust_remote_code`` (:mod:`text4seg.checkpoints.trust`). An option given a value other than its
default on a path where it does nothing (``--constrained-engine`` with ``--api``, ``--concurrency``
with ``--model``, ``--label`` with ``--video``, ...) is an error naming the flag, never silently
ignored. The rows, images and the output folder are :mod:`text4seg.inference.prepare`'s.

:meth:`~PredictOptions.result_options` are the options that change a result, recorded in
``OUT/run.json`` (:func:`text4seg.inference.outdir.record_options`; the keys of :data:`RESULT_OPTIONS`,
unchanged since run.json was introduced, so an earlier run is still recognised and resumed).
"""

from __future__ import annotations

import ast
import importlib.util
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from text4seg.checkpoints.trained import TrainedWith
from text4seg.descriptors import DEFAULT_GRID, DEFAULT_SCHEME, MAX_FREE

# the OpenAI-compatible servers predict --api knows (text4seg.inference.api_client); auto: ask the server
SERVERS = ("auto", "swift", "vllm")

# the options of a predict run that change its results, as recorded in OUT/run.json (run.json's keys:
# "label" is :attr:`PredictOptions.labels`); not the --api URL: the same served model may come back on
# another port
RESULT_OPTIONS = (
    "model",
    "served_model",
    "adapters",
    "model_type",
    "template",
    "jsonl",
    "image",
    "query",
    "label",
    "root",
    "grid",
    "scheme",
    "constrained",
    "max_new_tokens",
    "sam_checkpoint",
    "sam_type",
    "shard",
)

# field -> (its flag, the path it applies to: see PredictOptions.applies)
APPLIES = {
    "adapters": ("--adapters", "model"),
    "model_type": ("--model-type", "model"),
    "template": ("--template", "model"),
    "trust_remote_code": ("--trust-remote-code", "model"),
    "engine_kwargs": ("engine_kwargs", "model"),
    "max_free": ("max_free", "model"),
    "batch_size": ("--batch-size", "batches"),
    "constrained_engine": ("--constrained-engine", "constrained model"),
    "served_model": ("--served-model", "api"),
    "server": ("--server", "api"),
    "concurrency": ("--concurrency", "api"),
    "timeout": ("--timeout", "api"),
    "retries": ("--retries", "api"),
    "constrained": ("--constrained", "images"),
    "labels": ("--label", "image"),
    "grid": ("--grid", "not jsonl"),
    "scheme": ("--scheme", "not jsonl"),
    "skip_bad": ("--skip-bad", "images"),
    "root": ("--root", "jsonl"),
    "shard": ("--shard", "jsonl"),
    "limit": ("--limit", "jsonl"),
    "frames": ("--frames", "video"),
    "sampling": ("--sampling", "video"),
    "form": ("--form", "video"),
    "expression_id": ("--expression-id", "video"),
    "sam2_checkpoint": ("--sam2-checkpoint", "video"),
    "sam2_config": ("--sam2-config", "video"),
    "label_bias": ("--label-bias", "images"),
}
PATHS = {
    "model": "an in-process run (--model), not --api",
    "batches": "an in-process --image/--jsonl run (--api sends --concurrency requests at once; a video is "
    "one request)",
    "constrained model": "an in-process --constrained run",
    "api": "a --api run, not --model",
    "images": "an --image/--jsonl run, not --video",
    "jsonl": "a --jsonl run",
    "image": "an --image run (a --jsonl row carries its own labels)",
    "not jsonl": "an --image or --video run (a --jsonl row carries its own grid and scheme)",
    "video": "a --video run",
}


@dataclass
class PredictOptions:
    """Every option of one predict run (the flags of ``text4seg predict``; module docstring).

    The model: ``model`` (a folder, loaded in-process) or ``api`` (a server URL; ``served_model``,
    ``server``, ``concurrency``, ``timeout`` s per request, ``retries``); ``adapters`` (LoRA folders),
    ``model_type`` and ``template`` (ms-swift names), ``trust_remote_code``, ``engine_kwargs`` (more
    ``TransformersEngine`` arguments; Python only). The inputs: one of ``jsonl`` (with ``root``,
    ``shard`` ``"i/N"``, ``limit``), ``image`` (with ``query``, ``labels``, ``grid``, ``scheme``) and
    ``video`` (with ``query``, ``frames``, ``sampling``, ``form``, ``expression_id``, ``sam2_checkpoint``,
    ``sam2_config``); ``skip_bad``: skip the queries of unreadable images. Decoding: ``batch_size``,
    ``max_new_tokens`` (default: each query's answer bound), ``constrained`` with ``constrained_engine``
    and ``max_free``, SAM refinement with ``sam_checkpoint`` of ``sam_type``. The output: ``out``,
    ``overlays``, ``progress``, ``overwrite`` (start over in an ``out`` holding other options' results).

    What the checkpoint was trained with (``text4seg.json``, :mod:`text4seg.checkpoints.trained`: read from
    ``adapters`` then ``model``, or from ``trained_with``, a checkpoint folder or the file, for ``--api``)
    gives the defaults of ``grid``, ``scheme``, ``query`` (its question template filled with the first
    ``--label``) and ``label_bias`` (a logit bias on the label tokens: in-process, or vLLM's
    ``logit_bias`` field with ``--api``, the ids named by ``trained_with``'s tokenizer, kept in
    ``bias_tokenizer``); a value that disagrees is an error unless ``force_options``. ``None`` means "not
    given".
    """

    model: str | os.PathLike | None = None
    adapters: list[str] = field(default_factory=list)
    model_type: str | None = None
    template: str | None = None
    trust_remote_code: bool = False
    engine_kwargs: dict = field(default_factory=dict)
    api: str | None = None
    served_model: str | None = None
    server: str = "auto"
    concurrency: int = 4
    timeout: float = 300.0
    retries: int = 3
    jsonl: str | os.PathLike | None = None
    image: str | os.PathLike | None = None
    video: str | os.PathLike | None = None
    query: str | None = None
    labels: list[str] = field(default_factory=list)
    root: str | os.PathLike | None = None
    shard: str | None = None
    limit: int | None = None
    grid: tuple[int, int] | None = None
    scheme: str | None = None
    trained_with: str | os.PathLike | None = None
    force_options: bool = False
    label_bias: float | None = None
    batch_size: int = 8
    max_new_tokens: int | None = None
    constrained: bool = False
    constrained_engine: str = "auto"
    max_free: int = MAX_FREE
    sam_checkpoint: str | os.PathLike | None = None
    sam_type: str = "vit_h"
    frames: int = 8
    sampling: str = "uniform"
    form: str = "frames"
    expression_id: str = "0"
    sam2_checkpoint: str | os.PathLike | None = None
    sam2_config: str | None = None
    out: str | os.PathLike | None = None
    overlays: bool = True
    progress: bool = True
    skip_bad: bool = False
    overwrite: bool = False
    trained: TrainedWith | None = field(default=None, init=False, repr=False, compare=False)
    bias_tokenizer: Path | None = field(default=None, init=False, repr=False, compare=False)

    # ---------------------------------------------------------------------------------- checks
    def validate(self) -> PredictOptions:
        """Check every option that can be checked before a model loads (module docstring); ``ValueError``
        or ``OSError`` naming the flag and quoting the value; first the defaults of the checkpoint's
        ``text4seg.json`` (:meth:`apply_trained`). Returns ``self``."""
        self.apply_trained()
        self._check_path()
        self._check_values()
        self._check_applies()
        check_engine_names(self.template, self.model_type)
        self._check_files()
        if self.image is not None and self.constrained and not self.labels:
            raise ValueError("constrained decoding on one image needs the target label(s): --label TEXT")
        if self.model is not None:  # (with --api the server loads the model)
            from text4seg.checkpoints.settings import check_model_ref
            from text4seg.checkpoints.trust import check_trusted

            check_model_ref(self.model, "--model")  # a mistyped path: an error now, not hub retries
            check_trusted([self.model, *self.adapters], self.trust_remote_code)
        return self

    def apply_trained(self) -> None:
        """Fill ``grid``, ``scheme``, ``query`` and ``label_bias`` from the checkpoint's ``text4seg.json``
        (class docstring); ``ValueError`` for a flag that disagrees with it unless ``force_options``."""
        from text4seg.checkpoints.trained import fill, read_trained, resolve
        from text4seg.descriptors import grid_shape

        trained = self.trained
        if trained is None and self.trained_with is not None:
            trained = read_trained(self.trained_with)
            if trained is None:
                raise OSError(f"--trained-with {self.trained_with}: no text4seg.json there")
        elif trained is None and self.model is not None and os.path.isdir(self.model):
            trained = read_trained(self.model, [a for a in self.adapters if os.path.isdir(a)])
        self.trained = trained
        force, where = self.force_options, trained.where() if trained else None
        if self.jsonl is None:  # a --jsonl row carries its own grid and scheme (checked by run_predict)
            grid = None if self.grid is None else grid_shape(self.grid)
            self.grid = resolve("--grid", grid, trained and trained.grid, force, where=where) or DEFAULT_GRID
            self.scheme = (
                resolve("--scheme", self.scheme, trained and trained.scheme, force, where=where)
                or DEFAULT_SCHEME
            )
        if self.image is not None and not self.query and self.labels and trained and trained.question:
            self.query = fill(trained.question, self.labels[0])
        trained_bias = trained.bias(self.constrained) if trained else None
        self.label_bias = resolve("--label-bias", self.label_bias, trained_bias, force, where=where)
        if self.api is not None and self.label_bias:
            self.bias_tokenizer = self._api_bias_tokenizer(where or "--label-bias")

    def _api_bias_tokenizer(self, where: str) -> Path:
        """The tokenizer folder naming the label tokens of a ``--api`` label bias (vLLM's ``logit_bias``;
        ``swift deploy`` takes none): ``ValueError`` when there is none to be had."""
        from text4seg.inference.bias import SWIFT_NO_BIAS, tokenizer_folder

        bias = self.label_bias
        if self.server == "swift":
            raise ValueError(SWIFT_NO_BIAS.format(bias=bias, url=self.api) + f" ({where})")
        folder = tokenizer_folder(self.trained_with) if self.trained_with is not None else None
        if folder is None:
            raise ValueError(
                f"label bias {bias:g} ({where}) with --api is sent as vLLM's logit_bias, whose token ids "
                f"come from the checkpoint's tokenizer: no tokenizer in --trained-with {self.trained_with} "
                "(nor in the base model its args.json names); predict with --model, or pass "
                "--label-bias 0 --force-options"
            )
        return folder

    def _check_path(self) -> None:
        if (self.image is not None or self.video is not None) and not self.query:
            raise ValueError("--image and --video need --query")
        if (self.model is None) == (self.api is None):
            raise ValueError("give exactly one of --model (in-process) and --api (a server URL)")
        if self.api is not None and self.video is not None:
            raise ValueError("--video runs in-process: give --model, not --api")
        given = [f for f in ("jsonl", "image", "video") if getattr(self, f) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of --jsonl, --image and --video, got {', '.join(given)}")

    def applies(self, path: str) -> bool:
        """Whether options of ``path`` (:data:`PATHS`) do something in this run."""
        in_process = self.model is not None
        return {
            "model": in_process,
            "batches": in_process and self.video is None,
            "constrained model": in_process and self.constrained,
            "api": self.api is not None,
            "images": self.video is None,
            "jsonl": self.jsonl is not None,
            "image": self.image is not None,
            "not jsonl": self.jsonl is None,
            "video": self.video is not None,
        }[path]

    def _check_applies(self) -> None:
        defaults = {
            f.name: f.default_factory() if callable(f.default_factory) else f.default for f in fields(self)
        }
        for name, (flag, path) in APPLIES.items():
            value = getattr(self, name)
            if value != defaults[name] and not self.applies(path):
                shown = flag if value is True else f"{flag} {_quote(value)}"
                raise ValueError(f"{shown} applies to {PATHS[path]}; drop it")

    def _check_values(self) -> None:
        from text4seg.descriptors import SCHEMES, grid_shape
        from text4seg.inference.constrained import CONSTRAINED_ENGINES
        from text4seg.inference.refine import SAM_TYPES

        for flag, value, low in (
            ("--batch-size", self.batch_size, 1),
            ("--limit", self.limit, 1),
            ("--max-new-tokens", self.max_new_tokens, 1),
            ("--frames", self.frames, 1),
            ("--concurrency", self.concurrency, 1),
            ("--retries", self.retries, 0),
        ):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise ValueError(f"{flag} must be an integer >= {low}, got {_quote(value)}")
        if not (isinstance(self.timeout, (int, float)) and math.isfinite(self.timeout) and self.timeout > 0):
            raise ValueError(f"--timeout must be a positive number of seconds, got {self.timeout}")
        if self.grid is not None:
            self.grid = grid_shape(self.grid)
        for flag, value, choices in (
            ("--scheme", self.scheme, sorted(SCHEMES)),
            ("--constrained-engine", self.constrained_engine, CONSTRAINED_ENGINES),
            ("--sam-type", self.sam_type, SAM_TYPES),
            ("--server", self.server, SERVERS),
            ("--sampling", self.sampling, ("uniform", "keyframe")),
            ("--form", self.form, ("frames", "delta")),
        ):
            if value not in choices and not (flag == "--scheme" and value is None):
                raise ValueError(f"{flag} must be one of {list(choices)}, got {_quote(value)}")
        if self.video is not None:
            from text4seg.inference.video import check_expression_id

            check_expression_id(self.expression_id)

    def _check_files(self) -> None:
        """``--sam-checkpoint`` a regular SAM state dict (read weights-only, tensors mapped), each of
        ``--adapters`` a LoRA folder (``adapter_config.json``) unless it reads as a hub id (``org/name``),
        ``--video`` present, ``--sam2-checkpoint`` a file."""
        sam = self.sam_checkpoint
        if sam is not None and not os.path.isfile(sam):
            why = "a folder" if os.path.isdir(sam) else "not found"
            raise OSError(f"--sam-checkpoint {sam}: {why} (expected a SAM .pth file)")
        if sam is not None:  # weights_only, tensors mapped: no code runs and nothing big is read yet
            from text4seg.inference.refine import load_sam_state

            load_sam_state(sam, mmap=True)
        for a in map(str, self.adapters):
            if os.path.isdir(a):
                if not os.path.isfile(os.path.join(a, "adapter_config.json")):
                    raise OSError(f"--adapters {a}: no adapter_config.json (not a LoRA adapter folder)")
            elif os.path.exists(a) or os.path.isabs(a) or a.startswith(".") or a.count("/") != 1:
                raise OSError(f"--adapters {a}: not a folder (expected a LoRA adapter folder)")
        if self.video is not None and not Path(self.video).exists():
            raise OSError(f"--video {self.video}: not found")
        if self.sam2_checkpoint is not None and not Path(self.sam2_checkpoint).is_file():
            raise OSError(f"--sam2-checkpoint {self.sam2_checkpoint}: not a file")

    # ---------------------------------------------------------------------------------- run.json
    def result_options(self) -> dict:
        """The options that change a result (:data:`RESULT_OPTIONS`), as ``OUT/run.json`` records them:
        paths absolute, ``label`` None when no label was given."""
        opts = {k: getattr(self, "labels" if k == "label" else k) for k in RESULT_OPTIONS}
        for k in ("model", "jsonl", "image", "root", "sam_checkpoint"):
            opts[k] = None if opts[k] is None else os.path.abspath(opts[k])
        opts["adapters"] = [os.path.abspath(a) for a in self.adapters]
        opts["label"] = list(self.labels) or None
        opts["grid"] = [int(v) for v in (self.grid or DEFAULT_GRID)]
        opts["scheme"] = self.scheme or DEFAULT_SCHEME
        if self.label_bias:  # (absent when none: a run recorded before label biases still resumes)
            opts["label_bias"] = float(self.label_bias)
        return opts


def _quote(value) -> str:
    if isinstance(value, tuple) and len(value) == 2:  # a grid
        return f"{value[0]}x{value[1]}"
    text = repr(os.fspath(value) if isinstance(value, os.PathLike) else value)
    return text if len(text) <= 80 else text[:77] + "..."


def swift_names(kind: str) -> set[str] | None:
    """The names ms-swift knows for ``kind`` ``"template"`` or ``"model"`` (the string constants of its
    ``swift/<kind>/constant.py``, read as text: ms-swift is not imported), None if they cannot be read."""
    spec = importlib.util.find_spec("swift")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(folder, kind, "constant.py")
        try:
            with open(path, encoding="utf-8") as fh:
                tree = ast.parse(fh.read())
        except (OSError, SyntaxError, ValueError):
            continue
        names = {
            node.value.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        }
        return names or None
    return None


def check_engine_names(template: str | None, model_type: str | None) -> None:
    """``ValueError`` for a ``--template`` or ``--model-type`` that ms-swift does not know (checked only
    where ms-swift's names can be read; text4seg's own templates count as known)."""
    from text4seg.checkpoints.align import PROJECT_TEMPLATES

    for flag, value, kind, extra in (
        ("--template", template, "template", set(PROJECT_TEMPLATES)),
        ("--model-type", model_type, "model", set()),
    ):
        known = swift_names(kind) if value else None
        if known is not None and value not in known | extra:
            near = sorted(n for n in known | extra if n.split("_")[0] == value.split("_")[0])[:8]
            hint = f" (similar: {', '.join(near)})" if near else ""
            raise ValueError(f"{flag} {value!r} is not an ms-swift {kind} type{hint}")
