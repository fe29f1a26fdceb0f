"""The label bias (text4seg.inference.bias): per row, on the tokens that start a cell of the row's labels."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


def _tokenizer(extra=()):
    from transformers import PreTrainedTokenizerFast

    from text4seg.demo.model import train_bpe

    corpus = ["others *4| red circle *2| blue square *3\n others *16"] * 20
    return PreTrainedTokenizerFast(tokenizer_object=train_bpe(300, corpus, extra))


def test_each_row_gets_the_bias_on_its_own_ids_only():
    from text4seg.inference.bias import LabelBias

    scores = torch.zeros(2, 6)
    out = LabelBias([[1, 2], [4]], 2.5)(None, scores)
    assert out.tolist() == [[0, 2.5, 2.5, 0, 0, 0], [0, 0, 0, 0, 2.5, 0]]
    assert LabelBias([[1]], 0.0)(None, torch.zeros(1, 3)).tolist() == [[0, 0, 0]]  # 0: nothing added


def test_whole_cell_tokens_are_preferred_where_the_vocabulary_has_them():
    from text4seg.demo.model import cell_tokens
    from text4seg.inference.bias import label_token_ids

    tok = _tokenizer(cell_tokens(["red circle", "blue square"]))
    vocab = tok.get_vocab()
    want = sorted(vocab[t] for t in ("red circle", "| red circle", "\n red circle"))
    assert label_token_ids(tok, ["red circle"]) == want


def test_without_whole_cell_tokens_the_first_token_of_the_label_is_lifted():
    from text4seg.inference.bias import label_token_ids

    tok = _tokenizer()
    ids = label_token_ids(tok, ["red circle"])
    firsts = {tok.encode(t, add_special_tokens=False)[0] for t in ("red circle", " red circle")}
    assert ids == sorted(firsts) and all(tok.decode([i]).strip() for i in ids)
    assert not set(ids) & set(label_token_ids(tok, ["blue square"]))
