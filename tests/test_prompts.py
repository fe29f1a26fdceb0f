"""Templates are data: every family parses, carries its placeholder, and builds Text4Seg-style answers."""

from __future__ import annotations

import pytest

from data_builders.prompts import (
    FAMILIES,
    TEMPLATE_DIR,
    answer,
    load_templates,
    official_refer_turn,
    reason_turn,
    refer_turn,
    sample_rng,
    semantic_turn,
)


def _lists():
    out = []
    for fam in FAMILIES:
        t = load_templates(fam)
        groups = [(m, g) for m, g in t.items() if isinstance(g, dict)] or [("", t)]
        for mode, g in groups:
            out += [(fam, mode, k, v) for k, v in g.items() if isinstance(v, list)]
    return out


def test_every_template_file_is_a_family_and_loads_through_the_one_loader():
    assert sorted(FAMILIES) == sorted(p.stem for p in TEMPLATE_DIR.glob("*.json"))
    for fam in FAMILIES:
        assert load_templates(fam)["question"] if fam not in ("semantic", "video") else load_templates(fam)


PLACEHOLDER = {
    "refer": "{target}",
    "semantic": "{classes}",
    "reason": "{query}",
    "multi": "{targets}",
    "instance": "{classes}",
}


@pytest.mark.parametrize("family,mode,key,sentences", _lists())
def test_template_lists_are_varied_unique_and_carry_their_placeholder(family, mode, key, sentences):
    assert len(sentences) >= 2 and len(set(sentences)) == len(sentences)
    placeholder = PLACEHOLDER.get(family)
    if key == "question" and placeholder:  # open-vocabulary questions name no classes; others have a slot
        assert all((placeholder in s) == (mode != "open_vocab") for s in sentences)
    fill = dict(target="x", classes="x", query="x", targets="x", prompt="x", grid="x", name="x")
    for s in sentences:
        s.format(**fill)  # no stray braces


def test_answer_is_sentence_newline_then_seg_block():
    assert answer("Here.", "others *16\n") == "Here.\n<seg>others *16\n</seg>"


def test_turns_are_deterministic_by_seed_and_key_and_vary_across_keys():
    a = refer_turn(sample_rng(0, "k1"), "the dog", "d\n")
    assert a == refer_turn(sample_rng(0, "k1"), "the dog", "d\n")
    many = {refer_turn(sample_rng(0, f"k{i}"), "the dog", "d\n") for i in range(50)}
    assert len(many) > 10
    q, ans = a
    assert "the dog" in q and ans.endswith("\n<seg>d\n</seg>") and ans[0].isupper()


def test_empty_answers_come_from_the_empty_family():
    empty = set(load_templates("refer")["answer_empty"])
    for i in range(20):
        _, ans = refer_turn(sample_rng(1, str(i)), "the cat", "x", empty=True)
        sentence = ans.split("\n<seg>")[0]
        assert any(sentence.lower() == e.format(target="the cat").lower() for e in empty)


def test_semantic_and_reason_turns_fill_their_placeholders():
    q, a = semantic_turn(sample_rng(0, "s"), "conditioned", ["cat", "sky"], "d\n")
    assert "cat, sky" in q and a.endswith("<seg>d\n</seg>")
    q, _ = reason_turn(sample_rng(0, "r"), "  what holds water? ", "d\n")
    assert q.startswith("what holds water?")
    with pytest.raises(ValueError, match="unknown semantic mode 'x'.*open_vocab"):
        semantic_turn(sample_rng(0, "s"), "x", [], "")
    with pytest.raises(ValueError, match="unknown template family"):
        load_templates("nope")


def test_instance_templates_are_data_read_by_instance_turn():
    from data_builders.owndata import instance_turn

    t = load_templates("instance")
    q, a = instance_turn(sample_rng(0, "k"), ["cat", "dog"], "D")
    assert q in [x.format(classes="cat, dog") for x in t["question"]]
    assert a.split("\n")[0] in t["answer"] and a.endswith("\n<seg>D</seg>")


def test_official_refer_turn_golden_bytes_for_a_fixed_seed():
    # the released models' strings verbatim (text4seg/checkpoints/official_data/questions.json), drawn by
    # the per-sample rng: question first, then answer; the expression lower-cased and stripped, commas
    # removed only when asked (the official evaluation)
    rng = sample_rng(0, "refcoco/val/7/21")
    q, a = official_refer_turn(rng, "  The Man, On The LEFT ", "others *256", strip_commas=True)
    assert q == "Please segment the image and highlight 'the man on the left'."
    assert a == "Sure, the segmented output for 'the man on the left' is:\n<seg>others *256</seg>"
    q, a = official_refer_turn(sample_rng(0, "refcoco/val/7/21"), "  The Man, On The LEFT ", "D")
    assert q == "Please segment the image and highlight 'the man, on the left'."
    assert a == "Sure, the segmented output for 'the man, on the left' is:\n<seg>D</seg>"


def test_official_refer_turn_draws_only_official_strings():
    from text4seg.checkpoints import official

    qs = {t.replace("[class_name]", "x y") for t in official.questions("referring")}
    answers = {t.replace("[class_name]", "x y") for t in official.load("questions")["referring"]["answers"]}
    seen = set()
    for k in range(300):
        q, a = official_refer_turn(sample_rng(k, "id"), "X Y", "D")
        assert q in qs and a.split("\n")[0] in answers
        seen.add(q)
    assert seen == qs  # every one of the six questions is drawn
