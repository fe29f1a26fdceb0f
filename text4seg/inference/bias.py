"""A label bias: a constant added to the logits of a query's own label tokens at every step.

A decoding knob. A model trained briefly knows *where* the object is but is shy to *start* a run of
its label after a row of ``others``; a constant on the label's tokens moves that threshold. The demo
tunes it on its validation split and records it in the checkpoint's ``text4seg.json``
(:mod:`text4seg.checkpoints.trained`: one value for greedy, one for constrained decoding), which
``predict``, ``app`` and the demo apply through :class:`~text4seg.inference.predict.Predictor`'s
``label_bias``.

Each row of a batch gets the bias on the tokens of *its* labels only (:class:`LabelBias`), so an
answer does not depend on which other queries share its batch: ``predict`` with batches of 8, the app
with one query at a time and the demo give the same answers. The tokens of a label ``L`` are the tokens
that start a cell of ``L`` (:func:`label_token_ids`): the whole-cell tokens ``L``, ``"| L"`` and
``"\\n L"`` where the vocabulary has them (the demo's tokenizer adds them), else the first token of
``L`` and of ``" L"`` (a byte-level BPE such as Qwen's: ``dog``, ``Ġdog``).

A server takes no logits processor, but vLLM's OpenAI server takes the same bias as a request field
(``"logit_bias": {"<token id>": bias}``): ``predict --api`` sends it, with the token ids named by the
checkpoint's tokenizer (:func:`tokenizer_folder`: the ``--trained-with`` folder, or the base model its
``args.json`` names). ``swift deploy`` has no such field (ms-swift's ``RequestConfig``): a bias there is
an error, never silently dropped.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path


def label_token_ids(tokenizer, labels: Sequence[str]) -> list[int]:
    """Sorted ids of the tokens that start a cell of each of ``labels`` for ``tokenizer`` (a
    ``transformers`` tokenizer): the whole-cell tokens ``L``, ``"| L"``, ``"\\n L"`` its vocabulary has;
    a label with none gets the first token of ``L`` and of ``" L"`` (never a whitespace-only token)."""
    vocab = tokenizer.get_vocab()
    ids: set[int] = set()
    for lab in labels:
        whole = {vocab[t] for t in (lab, "| " + lab, "\n " + lab) if t in vocab}
        if whole:
            ids |= whole
            continue
        for text in (lab, " " + lab):
            first = tokenizer.encode(text, add_special_tokens=False)[:1]
            if first and tokenizer.decode(first).strip():
                ids.add(int(first[0]))
    return sorted(ids)


class LabelBias:
    """A ``transformers`` ``LogitsProcessor`` adding ``bias`` to the logits of row ``i``'s label tokens
    ``token_ids[i]`` (a list per batch row). ``scores``: float tensor ``(batch, vocab)``, changed in
    place and returned."""

    def __init__(self, token_ids: Sequence[Sequence[int]], bias: float):
        self.token_ids, self.bias = [list(ids) for ids in token_ids], float(bias)

    def __call__(self, input_ids, scores):
        if self.bias:
            for row, ids in enumerate(self.token_ids):
                if ids and row < scores.shape[0]:
                    scores[row, ids] += self.bias
        return scores


class LabelTokens:
    """:func:`label_token_ids` of one tokenizer, remembered per label set (a query's labels); safe to
    call from several threads (the server client's)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._ids: dict[tuple[str, ...], list[int]] = {}
        self._lock = threading.Lock()

    def __call__(self, labels: Sequence[str]) -> list[int]:
        key = tuple(sorted(set(labels)))
        with self._lock:
            if key not in self._ids:
                self._ids[key] = label_token_ids(self.tokenizer, key)
            return self._ids[key]


SWIFT_NO_BIAS = (
    "label bias {bias:g}: {url} is swift deploy, whose requests take no logit_bias (ms-swift's "
    "RequestConfig): serve the checkpoint with vllm serve, predict with --model, or pass --label-bias 0 "
    "--force-options"
)

# the files a transformers tokenizer folder has (any one of them)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


def tokenizer_folder(checkpoint: str | os.PathLike) -> Path | None:
    """The folder whose tokenizer names a checkpoint's label tokens: ``checkpoint`` (a folder, or a file
    in it such as its ``text4seg.json``) when it holds tokenizer files, else the local base model its
    ms-swift ``args.json`` names (a LoRA checkpoint), else None."""
    from text4seg.checkpoints.settings import read_args

    folder = Path(checkpoint)
    folder = folder.parent if folder.is_file() else folder
    candidates = [folder]
    args = read_args(folder) if folder.is_dir() else None
    base = args.get("model") if isinstance(args, dict) else None
    if isinstance(base, str) and base:
        candidates.append(Path(base))
    return next((c for c in candidates if any((c / f).is_file() for f in TOKENIZER_FILES)), None)


def load_tokenizer(folder: str | os.PathLike, trust_remote_code: bool = False):
    """The ``transformers`` tokenizer of ``folder``; a folder carrying code is refused unless
    ``trust_remote_code`` (:mod:`text4seg.checkpoints.trust`)."""
    from text4seg._lazy import require
    from text4seg.checkpoints.trust import check_trusted

    check_trusted([folder], trust_remote_code)
    transformers = require("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
