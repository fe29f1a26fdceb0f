"""The compact scheme: golden strings, strict errors, per-line repairs."""

import numpy as np
import pytest

from text4seg import decode, encode
from text4seg.descriptors import DescriptorError

DOG = [
    ["others"] * 4,
    ["others", "dog", "dog", "others"],
    ["others", "dog", "dog", "dog"],
    ["others"] * 4,
]


def kinds(res):
    return {r.kind for r in res.repairs}


def two_label_map():
    g = np.full((8, 16), "sky", dtype=object)
    g[5:7, 5:10] = "boat"
    return g


def test_compact_golden_strings():
    assert encode(DOG, "compact") == "dog\n1:1-2\n2:1-3\n"
    assert encode(two_label_map(), "compact") == "sky| boat\n0-4:0-15\n5-6:0-4,5-9=2,10-15\n7:0-15\n"
    assert encode(np.full((16, 16), "others"), "compact") == "others\n"
    assert encode([["a", "others", "a"]], "compact") == "a\n0:0,2\n"


def test_compact_round_trips_the_examples_strictly():
    for g in (DOG, two_label_map()):
        g = np.asarray(g, dtype=str)
        assert (decode(encode(g, "compact"), g.shape, "compact", strict=True).grid == g).all()


@pytest.mark.parametrize(
    "text,row,col",
    [
        ("dog\n2:1-3\n1:1-2\n", 1, None),  # rows must ascend
        ("dog\n1:2-1\n", None, None),  # backwards span
        ("dog\n1:1-4\n", 1, 1),  # column beyond the grid
        ("dog\n1:1=2\n", 1, 1),  # unknown label
        ("dog\n1: 1\n", 1, 0),  # a space is not canonical
        ("dog\n1:1\n7:0\n", 7, None),  # row beyond the grid
    ],
)
def test_compact_strict_errors_name_the_place(text, row, col):
    with pytest.raises(DescriptorError) as info:
        decode(text, 4, "compact", strict=True)
    if row is not None:
        assert info.value.row == row
    if col is not None:
        assert info.value.col == col


def test_compact_bad_line_is_skipped_without_touching_other_rows():
    res = decode("dog\n1:1-2\nI think more dog\n2:1-3\n", 4, "compact")
    assert res.grid.tolist() == DOG
    assert "bad_line" in kinds(res)


def test_compact_truncated_answer_keeps_the_rows_it_reached():
    res = decode("<seg>dog\n1:1-2\n2:1", 4, "compact")
    assert res.grid[1].tolist() == DOG[1] and res.grid[2].tolist() == ["others", "dog", "others", "others"]
    assert "unclosed_seg" in kinds(res)


def test_compact_out_of_range_is_clipped_and_overlaps_keep_the_later_line():
    res = decode("dog\n2-9:3-20\n2:0\n", 4, "compact")
    assert res.grid[:, 3].tolist() == ["others", "others", "others", "dog"]
    assert res.grid[2].tolist() == ["dog", "others", "others", "others"]
    assert {"out_of_range", "overlap"} <= kinds(res)


def test_compact_lenient_accepts_spaces():
    assert decode("dog\n 1 : 1 - 2 \n2:1-3, \n", 4, "compact").grid[:3].tolist() == DOG[:3]


def test_compact_empty_grid_is_no_target():
    assert decode("<seg>others\n</seg>", 16, "compact", strict=True).is_empty
