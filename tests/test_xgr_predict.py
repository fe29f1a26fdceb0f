"""Predictor's constrained decoding with either engine: every answer of a random tiny LLaVA parses strictly
within the default budget, and within a context too short for that budget (xgrammar's free text shrinks);
the engine choice and the one warning about a short budget."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image
from support.offline import offline, one_torch_thread

from text4seg import decode
from text4seg.data.queries import Query
from text4seg.descriptors import get_scheme, max_answer_tokens
from text4seg.inference.constrained import ConstrainedDecoder

GRID = (3, 4)
LABEL = "red circle"


def _queries(images: list[str]) -> list[Query]:
    return [
        Query(f"q{i}", img, "Please segment the red circle.", labels=[LABEL], grid=GRID, scheme=scheme)
        for i, (img, scheme) in enumerate(zip(images, ["rrle", "compact"]))
    ]


def test_an_unknown_engine_names_the_choices():
    with pytest.raises(ValueError, match=r"'auto', 'xgrammar', 'own'.*'fast'"):
        ConstrainedDecoder("fast")


def test_auto_takes_xgrammar_when_importable_and_says_once_when_it_falls_back(monkeypatch, capsys):
    import importlib.util

    found = importlib.util.find_spec("xgrammar") is not None
    assert ConstrainedDecoder().engine_used() == ("xgrammar" if found else "own")
    capsys.readouterr()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    dec = ConstrainedDecoder("auto")
    assert [dec.engine_used(), dec.engine_used()] == ["own", "own"]
    assert capsys.readouterr().err.count("xgrammar is not installed") == 1
    assert ConstrainedDecoder("own").engine_used() == "own"


def test_a_budget_below_the_bound_is_reported_once_naming_the_query():
    dec = ConstrainedDecoder("own")
    qs = _queries(["a.png", "b.png"])
    need = dec.bound(qs[0])
    assert need == max_answer_tokens("rrle", GRID, [LABEL])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dec.check_room(qs, need)  # enough: silent
    said = r"query 'q0' turn 0: 100 new tokens \(the model's context of 900"
    with pytest.warns(RuntimeWarning, match=said):
        dec.check_room(qs, 100, (900, 800))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dec.check_room(qs, 50)  # said once


def test_xgrammar_free_text_shrinks_by_what_the_budget_lacks():
    dec = ConstrainedDecoder("xgrammar", max_free=40)
    qs = _queries(["a.png", "b.png"])
    longest = max(dec.bound(q) for q in qs)
    assert dec.free_within(qs, longest + 5) == 40
    assert dec.free_within(qs, longest - 30) == 10
    block = len("<seg></seg>") + get_scheme("rrle").budget(*GRID, [LABEL]).most + 1
    assert dec.free_within(qs[:1], block) == 0


# ------------------------------------------------------------------------- on the tiny demo LLaVA
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("swift")
    root = tmp_path_factory.mktemp("xgr_predict")
    with one_torch_thread(), offline(root):
        from text4seg.demo.model import make_tiny_llava

        model = make_tiny_llava(root / "llava")
        rng = np.random.default_rng(0)
        images = []
        for i, (h, w) in enumerate([(48, 80), (80, 48)]):
            images.append(str(root / f"img{i}.png"))
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(images[-1])
        yield model, _queries(images)


def _strict(records, queries):
    for r, q in zip(records, queries):
        res = decode(r.answer, GRID, q.scheme, strict=True)  # raises if not
        assert r.parse_valid and r.constrained and set(res.labels) <= {LABEL}


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["xgrammar", "own"])
def test_constrained_predict_parses_strictly_within_the_default_budget_and_a_short_context(tiny, engine):
    if engine == "xgrammar":
        pytest.importorskip("xgrammar")
    from text4seg.inference.predict import Predictor

    model, queries = tiny
    p = Predictor(model, batch_size=2, constrained=True, constrained_engine=engine, model_type="llava1_5_hf")
    recs = list(p.predict(queries, overlays=False))
    _strict(recs, queries)
    assert all(r.num_tokens <= p.budget(q) for r, q in zip(recs, queries))
    # a context that leaves room for the longest block but not for the free text: warned, still strict
    room = max(p.budget(q) for q in queries) - p.decoder.max_free + 8
    p.engine.max_model_len = p.last_processor.prompt_len + room
    with pytest.warns(RuntimeWarning, match="model's context"):
        recs = list(p.predict(queries, overlays=False))
    _strict(recs, queries)
    assert all(r.num_tokens <= room for r in recs)
