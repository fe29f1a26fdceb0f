"""Multi-frame answers: both forms round-trip losslessly; absent frames are words; lenient decoding."""

import numpy as np
import pytest

from text4seg.descriptors import BACKGROUND
from text4seg.descriptors.video import decode_frames, encode_frames


def clip():
    gs = np.full((4, 4, 4), BACKGROUND, dtype="<U8")
    gs[0, 1, 1:3] = "dog"
    gs[1, 1, 2:4] = "dog"
    gs[2, 1, 2:4] = "dog"  # same as frame 2
    return gs  # frame 4 absent


@pytest.mark.parametrize("scheme,form", [("rrle", "frames"), ("rrle", "delta"), ("compact", "frames")])
def test_every_form_round_trips_losslessly(scheme, form):
    gs = clip()
    text = encode_frames(gs, scheme, form)
    out = decode_frames("Here it is.\n" + text, 4, 4, scheme, form)
    assert out.repairs == []
    assert (out.grids == gs).all()


def test_absent_frame_is_said_in_words_and_delta_writes_only_changed_rows():
    text = encode_frames(clip(), "rrle", "delta")
    assert text.splitlines() == [
        "Frame 1: <seg>1: others *1| dog *2| others *1",
        "</seg>",
        "Frame 2: <seg>1: others *2| dog *2",
        "</seg>",
        "Frame 3: same",
        "Frame 4: absent",
    ]


def test_missing_and_out_of_range_frames_are_repaired_not_raised():
    text = encode_frames(clip()[:2], "rrle") + "Frame 9: absent\n"
    out = decode_frames(text, 3, 4)
    kinds = [(k, r.kind) for k, r in out.repairs]
    assert (2, "missing_frame") in kinds and (None, "extra_frame") in kinds
    assert (out.grids[2] == BACKGROUND).all()


def test_delta_form_refuses_other_schemes_naming_the_allowed_one():
    with pytest.raises(ValueError, match="'rrle'"):
        encode_frames(clip(), "compact", "delta")
