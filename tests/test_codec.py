"""The descriptor codec: golden strings, round trips, strict errors and the lenient decoder's repairs."""

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.garbage import GARBAGE

import text4seg
from text4seg.descriptors import (
    REPAIR_KINDS,
    SCHEMES,
    DescriptorError,
    count_repairs,
    decode,
    encode,
    normalize_grid,
    normalize_label,
    wrap,
)
from text4seg.descriptors.core import MAX_LABEL_CHARS

DOG = [
    ["others"] * 4,
    ["others", "dog", "dog", "others"],
    ["others", "dog", "dog", "dog"],
    ["others"] * 4,
]
DOG_RRLE = "others *4\n others *1| dog *2| others *1\n others *1| dog *3\n others *4\n"
ALL_SCHEMES = tuple(SCHEMES)  # every registered scheme: a new one is tested here automatically


def test_rrle_matches_the_published_format_byte_for_byte():
    assert encode(DOG) == DOG_RRLE
    assert encode(np.array(DOG)) == DOG_RRLE


def test_irle_and_full_golden_strings():
    assert encode(DOG, "irle") == "others *5| dog *2| others *2| dog *3| others *4\n"
    assert encode(DOG, "full") == (
        "others| others| others| others\n others| dog| dog| others\n"
        " others| dog| dog| dog\n others| others| others| others\n"
    )


def test_count_one_is_always_written():
    assert encode([["a", "b"]]) == "a *1| b *1\n"


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_golden_example_decodes_strictly_in_every_scheme(scheme):
    res = decode(encode(DOG, scheme), 4, scheme, strict=True)
    assert res.grid.tolist() == DOG and res.ok


def test_answer_with_template_sentence_decodes():
    res = decode("Sure, it is here.\n" + wrap(DOG_RRLE) + " Anything else?", 4, strict=True)
    assert res.grid.tolist() == DOG


def test_unknown_scheme_error_lists_the_valid_ones():
    with pytest.raises(ValueError, match="rrle"):
        encode(DOG, "zip")
    with pytest.raises(ValueError, match="'zip'"):
        decode(DOG_RRLE, 4, "zip")


def test_rectangular_grid_round_trips():
    g = np.array([["a", "a", "b"], ["others", "b", "b"]])
    for scheme in ALL_SCHEMES:
        assert (decode(encode(g, scheme), (2, 3), scheme, strict=True).grid == g).all()


# ------------------------------------------------------------------------------------ labels
def test_labels_with_separators_are_normalised_deterministically():
    assert normalize_label("man | woman") == "man / woman"
    assert normalize_label("a *3") == "a +3"
    assert normalize_label("  two\nlines\t here ") == "two lines here"
    assert normalize_label("<seg>x</seg>") == "(seg)x(/seg)"
    assert normalize_label("   ") == "object"


label_text = st.lists(
    st.sampled_from(list("ab |*\n\t<>/.,;é猫🐶-0123456789") + ["others", " *", "| ", "\n ", "<seg>"]),
    max_size=8,
).map("".join)


@given(label_text)
def test_normalize_label_is_idempotent(s):
    assert normalize_label(normalize_label(s)) == normalize_label(s)


@st.composite
def grids(draw):
    rows = draw(st.sampled_from([16, 24, 32, 3, 1]))
    cols = draw(st.sampled_from([16, 24, 32, 5, 1]))
    labels = draw(st.lists(label_text, min_size=1, max_size=4)) + ["others"]
    idx = draw(st.lists(st.integers(0, len(labels) - 1), min_size=rows * cols, max_size=rows * cols))
    # blocky maps like real masks, plus the random per-cell indices
    g = np.array([labels[i] for i in idx], dtype=object).reshape(rows, cols)
    return g


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grids(), st.sampled_from(ALL_SCHEMES))
def test_decode_inverts_encode_for_every_scheme_size_and_label(g, scheme):
    text = encode(g, scheme)
    res = decode(text, g.shape, scheme, strict=True)
    assert (res.grid == normalize_grid(g)).all()
    assert res.ok
    # the lenient decoder agrees and reports nothing
    lenient = decode(wrap(text), g.shape, scheme)
    assert (lenient.grid == res.grid).all() and lenient.repairs == []


# ---------------------------------------------------------------------------- strict errors
@pytest.mark.parametrize(
    "text,row,col",
    [
        ("others *4\n others *1| dog *2| others *1\n others *1| dog *x\n others *4\n", 2, 1),
        ("others *4\n others *1| dog *2| others *2\n others *1| dog *3\n others *4\n", 1, 3),
        ("others *4\n others *1| dog *2\n others *1| dog *3\n others *4\n", 1, 3),
        ("others *4\n others *4\n others *4\n", 3, None),
        ("others *4\n others *4\n others *4\nothers *4\n", 3, None),
        ("others *4\n others *1| dog*3\n others *4\n others *4\n", 1, 1),
    ],
)
def test_strict_names_row_column_and_text(text, row, col):
    with pytest.raises(DescriptorError) as info:
        decode(text, 4, strict=True)
    assert info.value.row == row and info.value.col == col
    assert f"row {row}" in str(info.value)


@pytest.mark.parametrize(
    "text", ["", "no mask here", "<seg>others *4\n", "<seg>" + DOG_RRLE + "</seg><seg>" + DOG_RRLE + "</seg>"]
)
def test_strict_raises_the_project_error_on_bad_answers(text):
    with pytest.raises(DescriptorError):
        decode(text, 4, strict=True)


# --------------------------------------------------------------------------- lenient repairs
def kinds(res):
    return {r.kind for r in res.repairs}


def test_truncated_generation_keeps_parsed_rows_and_pads_the_rest():
    res = decode("The mask:\n<seg>others *4\n others *1| dog *2| oth", 4)
    assert res.grid[1].tolist() == ["others", "dog", "dog", "oth"]
    assert res.grid[2:].tolist() == [["others"] * 4] * 2
    assert {"unclosed_seg", "missing_rows", "missing_count"} <= kinds(res)


def test_a_bad_row_never_shifts_the_rows_after_it():
    text = "others *4\n others *1| dog *9\n others *1\n dog *4\n"
    res = decode(text, 4)
    assert res.grid.tolist() == [
        ["others"] * 4,
        ["others", "dog", "dog", "dog"],
        ["others"] * 4,
        ["dog"] * 4,
    ]
    assert ("row_long", 1) in {(r.kind, r.row) for r in res.repairs}
    assert ("row_short", 2) in {(r.kind, r.row) for r in res.repairs}


def test_short_row_is_padded_with_its_last_label():
    res = decode("others *2| dog *1\n others *4\n", (2, 4))
    assert res.grid[0].tolist() == ["others", "others", "dog", "dog"]


def test_missing_count_counts_one_and_unknown_separators_split_runs():
    res = decode("others *1, dog *2; others\n", (1, 4))
    assert res.grid.tolist() == [["others", "dog", "dog", "others"]]
    assert "missing_count" in kinds(res)


def test_extra_rows_are_cropped_and_missing_rows_padded():
    assert "extra_rows" in kinds(decode(DOG_RRLE + " dog *4\n", 4))
    res = decode("dog *4\n", 4)
    assert res.grid[0].tolist() == ["dog"] * 4 and (res.grid[1:] == "others").all()


def test_several_blocks_use_the_first_and_report_it():
    res = decode("<seg>dog *2\n</seg> and <seg>cat *2\n</seg>", (1, 2))
    assert res.grid.tolist() == [["dog", "dog"]] and "extra_seg" in kinds(res)


def test_garbage_and_empty_text_give_the_no_target_grid():
    for text in ["", "I cannot see that.", "<seg></seg>", "<seg>"]:
        res = decode(text, 16)
        assert res.grid.shape == (16, 16) and res.is_empty and not res.ok


def test_object_filling_the_whole_grid_is_not_empty():
    res = decode(encode(np.full((16, 16), "dog")), 16, strict=True)
    assert not res.is_empty and res.labels == ["dog"]


def test_zero_and_huge_counts_are_repaired():
    res = decode("dog *0| cat *99999999999999999999\n", (1, 3))
    assert res.grid.tolist() == [["cat"] * 3]
    assert {"bad_count", "row_long"} <= kinds(res)


def test_every_reported_repair_kind_is_documented():
    texts = ["", "junk", "<seg>dog", "a *0| b *1|| c\n d *3\n", "x" * 1000 + " *2\n", DOG_RRLE * 9]
    for t in texts:
        assert kinds(decode(t, 4)) <= set(REPAIR_KINDS)


def test_count_repairs_counts_answers_per_kind():
    out = count_repairs([decode(DOG_RRLE, 4), decode("<seg>dog *4\n", 4), decode("", 4)])
    assert out["answers_repaired"] == 2 and out["unclosed_seg"] == 1 and out["no_descriptors"] == 1


def test_very_long_labels_are_cut_so_the_grid_stays_small():
    res = decode("<seg>" + "x" * 1_000_000, 16)
    assert res.grid.dtype.itemsize <= 4 * MAX_LABEL_CHARS and "long_label" in kinds(res)


@pytest.mark.parametrize("junk", GARBAGE)
@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_lenient_decoder_never_raises_on_a_megabyte_of_garbage(junk, scheme):
    # its time is printed by benchmarks/codec.py (a quadratic parser would take minutes here)
    res = decode("<seg>" + junk, 16, scheme)
    assert res.grid.shape == (16, 16) and not res.ok


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("dog others*|\n 0123<seg>/é")), max_size=300))
def test_lenient_decoder_never_raises_on_any_string(text):
    for scheme in ALL_SCHEMES:
        res = decode(text, (3, 4), scheme)
        assert res.grid.shape == (3, 4)
        assert all(isinstance(r.kind, str) and r.kind in REPAIR_KINDS for r in res.repairs)


def test_decode_rejects_non_strings_with_a_clear_error():
    with pytest.raises(TypeError, match="str"):
        decode(b"others *16", 16)


def test_import_loads_no_heavy_dependency():
    # the import time (target < 0.3 s) is printed by benchmarks/codec.py
    heavy = "('torch', 'transformers', 'swift')"
    code = f"import sys, text4seg; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_api_round_trips_a_mask_in_every_scheme():
    m = np.zeros((30, 40), bool)
    m[10:20, 5:25] = True
    grid = text4seg.mask_to_grid(m, 8, labels="dog")
    for scheme in text4seg.SCHEMES:
        answer = "Sure.\n" + text4seg.wrap(text4seg.encode(grid, scheme))
        res = text4seg.decode(answer, 8, scheme, strict=True)
        assert isinstance(res, text4seg.Decoded)
        assert (text4seg.grid_to_mask(res.grid, 30, 40) == text4seg.grid_to_mask(grid, 30, 40)).all()
    with pytest.raises(text4seg.DescriptorError):
        text4seg.decode("no mask", 8, strict=True)


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_ok_is_true_exactly_when_the_strict_decoder_accepts(scheme):
    """`Decoded.ok` promises a strict parse: on corrupted answers (characters inserted, deleted, cut) it
    agrees with `decode(..., strict=True)` both ways, including defects the lenient decoder reads past
    without a repair (a missing final newline, an unnormalised label, a leading zero)."""
    import random

    rng = random.Random(scheme)
    for trial in range(400):
        n = rng.choice([2, 3, 4])
        grid = np.where(np.random.default_rng(trial).random((n, n)) < 0.4, "red car", "others")
        text = "Sure.\n" + wrap(encode(grid, scheme))
        for _ in range(rng.randint(0, 3)):
            i, c = rng.randrange(len(text) + 1), rng.choice("*|\n <>-:,=0123456789abc")
            op = rng.random()
            text = text[:i] + c + text[i:] if op < 0.4 else text[:i] + text[i + 1 :] if op < 0.8 else text[:i]
        try:
            decode(text, n, scheme, strict=True)
            strict_ok = True
        except DescriptorError:
            strict_ok = False
        assert decode(text, n, scheme).ok == strict_ok, repr(text)


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_the_verdict_taken_from_the_lenient_decode_equals_the_strict_parse_on_random_answers(scheme):
    """Where the lenient decoder gives the strict verdict itself (no second decode), it must be the
    strict decoder's: on 3,000 random answers per scheme (well-formed, corrupted by characters that
    matter to the parsers: separators, spaces, CR, tab, leading zeros, unnormalised labels), `ok` equals
    "strict parses" and then both decoders give the same runs."""
    import random

    rng = random.Random(f"verdict-{scheme}")
    labels = ["others", "red car", "Red  car", "a*b", "x|y", " cat", "0", "<seg>", "caf\u00e9", "a\u3000b"]
    noise = ["*", "|", "| ", "\n", "\n ", " ", "\r", "\t", "0", "01", "*0", "</seg>", "<seg>", "others"]
    noise += ["\u00a0", "\u3000", "\x1c", "<", ">", "\u200b"]  # unicode spaces, separators, zero width
    certain = 0
    for trial in range(3000):
        rows, cols = rng.choice([1, 2, 3, 4]), rng.choice([1, 2, 3, 5])
        pick = rng.sample(labels, 2) if trial % 3 else ["others", "red car"]
        grid = np.array([[rng.choice(pick) for _ in range(cols)] for _ in range(rows)])
        body = encode(grid, scheme)
        text = rng.choice(["", "Sure.\n", "<seg>x</seg>"]) + wrap(body) if trial % 5 else body
        for _ in range(rng.choice([0, 0, 1, 2, 3])):
            i = rng.randrange(len(text) + 1)
            op = rng.random()
            text = text[:i] + rng.choice(noise) + text[i:] if op < 0.6 else text[:i] + text[i + 1 :]
        res = decode(text, (rows, cols), scheme)
        certain += res._strict is None and not res.repairs
        try:
            strict = decode(text, (rows, cols), scheme, strict=True)
        except DescriptorError:
            strict = None
        assert res.ok == (strict is not None), repr(text)
        if strict is not None:
            assert res.runs == strict.runs or (res.grid == strict.grid).all(), repr(text)
    assert scheme == "compact" or certain > 500  # well-formed answers take the one-decode path


@pytest.mark.parametrize("counted", [True, False])
def test_a_row_the_fast_reader_accepts_is_read_alike_by_the_lenient_parser_without_a_repair(counted):
    """`fast_row` (the hot path: its counts from a table, `*`/`|` checked once a line) answers only for a
    row the lenient parser reads with the same runs and no repair: 30,000 random rows of labels, counts
    in and beyond the table (0, 007, 1024, 1025, 4000, 8 digits, Arabic-Indic digits), separators, stray
    `*`, `|`, spaces, tabs and a no-break space around labels."""
    import random

    from text4seg.descriptors.runs import fast_row, fit, parse_runs

    rng = random.Random(31)
    tokens = ["others", "thing", "a b", "*", "|", "| ", " *", " ", "0", "007", "1", "7", "1024", "1025"]
    tokens += ["4000", "12345678", "\u0663", " *5", " *1024", " *1025", " *4000", "| thing *3"]
    tokens += ["\t", "1025\t", "\xa0thing"]
    accepted = 0
    for _ in range(30_000):
        line = "".join(rng.choice(tokens) for _ in range(rng.randrange(1, 8)))
        for cols in (5, 16, 1031, 5025) if counted else (1, 2, 3):
            runs = fast_row(line, cols, counted)
            if runs is None:
                continue
            accepted += 1
            repairs: list = []
            assert fit(parse_runs(line, cols, counted, repairs, 0), cols, repairs, 0) == runs, line
            assert not repairs, (line, repairs)
    assert accepted > 200  # the property was exercised
