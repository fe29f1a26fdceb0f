"""The fast paths of text4seg/data/records.py give what the plain paths give: ``parse_line`` (one shared
strict decoder) words every refusal as ``json.loads(line, parse_constant=...)`` does, and
``to_swift_row``'s typed path writes the bytes of the converting path."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

import numpy as np
import pytest
from support.hostile import cli, one_line_error, write_jsonl

from text4seg.data.jsonl import parse_line
from text4seg.data.records import Sample, _converted_row, _typed_row, dumps_row, to_swift_row


def _reference_parse(line: str, path: str, n: int):
    """parse_line's verdict on a ``str`` line as worded with ``json.loads`` (a new decoder per line)."""

    def no_constant(name):
        raise ValueError(f"{name} is not JSON")

    if not line.strip():
        return None
    try:
        row = json.loads(line, parse_constant=no_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{n}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise ValueError(f"{path}:{n}: JSON nested too deep (not a JSONL row)") from None
    except ValueError as exc:
        raise ValueError(f"{path}:{n}: not valid JSON ({exc}; write null or a number)") from None
    if not isinstance(row, dict):
        raise ValueError(f"{path}:{n}: a JSON {type(row).__name__}, expected an object {{...}}")
    return row


def _verdict(f, line):
    try:
        return "ok", f(line, "f.jsonl", 3)
    except ValueError as exc:
        return "error", str(exc)


HOSTILE = [
    "",
    "\n",
    " \t\r\n",
    "\x0b\x0c\n",
    "\u00a0\u2028\n",
    '{"a": 1}\n',
    ' \t{"a": 1} \r\n',
    '\ufeff{"a": 1}\n',
    "\ufeff",
    '{"a": NaN}',
    '{"a": [-Infinity]}',
    '{"a": Infinity}',
    "[1, 2]",
    '"text"',
    "null",
    '{"a": 1}{"b": 2}',
    '{"a": 1} x',
    '{"a": ',
    '{"a": 1,}',
    "{'a': 1}",
    '{"a": 1e999}',
    '{"a": "\\ud800"}',
    '{"a": "\x01"}',
    "\x00",
    '{"a": tru}',
    '{"a": -}',
    '{"a": 1}\u00a0',
    '{"a": 1} \x0b',
    "[" * 100_000,
    '{"a": ' * 50_000,
]


@pytest.mark.parametrize("i", range(len(HOSTILE)))
def test_parse_line_words_every_verdict_as_json_loads_did(i):
    line = HOSTILE[i]
    assert _verdict(parse_line, line) == _verdict(_reference_parse, line)
    assert _verdict(parse_line, line.encode()) == _verdict(_reference_parse, line)


def test_parse_line_matches_json_loads_on_thousands_of_mutated_lines():
    rng = random.Random(0)
    base = '{"id":"a/b","turn":0,"grid":[16,16],"x":1.5e3,"y":[true,false,null],"s":"\\u00e9\\n"}'
    alphabet = '{}[]",:0123456789eE.-+ \t\n\\utfnalNIy\ufeff\u00a0'
    differences = []
    for _ in range(3000):
        chars = list(base)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(chars) + 1)
            if rng.random() < 0.5 and chars:
                del chars[min(i, len(chars) - 1)]
            else:
                chars.insert(i, rng.choice(alphabet))
        line = "".join(chars)
        if _verdict(parse_line, line) != _verdict(_reference_parse, line):
            differences.append(line)
    assert differences == []


def test_the_shared_decoder_parses_correctly_from_many_threads_at_once():
    lines = [json.dumps({"k": i, f"key{i % 7}": [i] * (i % 5)}) for i in range(2000)]
    bad: list[int] = []

    def work(offset):
        for i, line in enumerate(lines):
            row = parse_line(line, "f.jsonl", i)
            if row != json.loads(line):
                bad.append(i + offset)
            try:
                parse_line('{"x": NaN}', "f.jsonl", i)
                bad.append(-1)
            except ValueError:
                pass

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bad == []


def _typed_sample(rng: random.Random) -> Sample:
    turns = [(f"q{k} é", f"a{k}\n<seg>x *4\n</seg>") for k in range(rng.randint(1, 3))]
    labels = [f"label {k}" for k in range(rng.randint(0, 3))]
    return Sample(
        id=f"ds/val/{rng.randrange(10**6)}",
        image="/abs/img.png",
        width=rng.randint(1, 4000),
        height=rng.randint(1, 4000),
        turns=turns,
        task=rng.choice(["res", "gres", "reason"]),
        labels=labels,
        asked=rng.choice([[], ["other", *labels]]),
        grid=rng.choice([(16, 16), [8, 12]]),
        source=rng.choice(
            [
                {},
                {
                    "dataset": "refcoco",
                    "split": "val",
                    "image_id": 581857,
                    "ann_ids": [1, 2],
                    "sent_ids": [3],
                },
                {"dataset": "d", "split": None, "image_id": "7", "ref_id": "1,2", "ann_ids": ["5"]},
            ]
        ),
        masks=[{"size": [4, 5], "counts": "abc"} for _ in range(rng.randint(0, 2))],
        label_map=rng.choice(["", "/abs/map.png"]),
        boxes=rng.choice([[], [[1.5, 2.0, 3.25, 4.0]]]),
    )


def test_typed_samples_take_the_fast_path_and_write_the_converting_paths_bytes():
    rng = random.Random(1)
    for _ in range(500):
        s = _typed_sample(rng)
        fast = _typed_row(s)
        assert fast is not None
        assert dumps_row(fast) == dumps_row(_converted_row(s))
        assert dumps_row(to_swift_row(s)) == dumps_row(fast)


def test_the_fast_row_shares_no_list_with_the_sample():
    s = _typed_sample(random.Random(2))
    s.labels, s.boxes = ["a"], [[1.0, 2.0, 3.0, 4.0]]
    row = to_swift_row(s)
    row["text4seg"]["labels"].append("b")
    row["text4seg"]["gt"]["boxes"][0].append(9.0)
    assert s.labels == ["a"] and s.boxes == [[1.0, 2.0, 3.0, 4.0]]


class _Odd(str):
    def __str__(self):
        return "converted"


ODD_FIELDS = {
    "width_numpy": ("width", np.int64(7), lambda r: r["text4seg"]["width"] == 7),
    "width_bool": ("width", True, lambda r: r["text4seg"]["width"] == 1),
    "id_str_subclass": ("id", _Odd("x"), lambda r: r["text4seg"]["id"] == "converted"),
    "image_path": ("image", Path("/abs/i.png"), lambda r: r["images"] == ["/abs/i.png"]),
    "label_str_subclass": ("labels", [_Odd("x")], lambda r: r["text4seg"]["labels"] == ["converted"]),
    "grid_numpy": ("grid", (np.int64(4), 4), lambda r: r["text4seg"]["grid"] == [4, 4]),
    "box_ints": ("boxes", [[1, 2, 3, 4]], lambda r: r["text4seg"]["gt"]["boxes"] == [[1.0, 2.0, 3.0, 4.0]]),
    "box_tuple": ("boxes", [(1.0, 2.0)], lambda r: r["text4seg"]["gt"]["boxes"] == [[1.0, 2.0]]),
    "mask_size_tuple": (
        "masks",
        [{"size": (4, 5), "counts": "a"}],
        lambda r: r["text4seg"]["gt"]["masks"][0]["size"] == [4, 5],
    ),
    "classes": ("classes", ["c"], lambda r: r["text4seg"]["gt"]["classes"] == ["c"]),
    "frames": ("frames", ["/f1.png", "/f2.png"], lambda r: r["images"] == ["/f1.png", "/f2.png"]),
}


@pytest.mark.parametrize("kind", sorted(ODD_FIELDS))
def test_a_field_that_needs_converting_takes_the_converting_path(kind):
    name, value, check = ODD_FIELDS[kind]
    s = _typed_sample(random.Random(3))
    setattr(s, name, value)
    assert _typed_row(s) is None
    row = to_swift_row(s)
    assert check(row)
    assert dumps_row(row) == dumps_row(_converted_row(s))


BAD_LINES = {
    "bom": (
        '\ufeff{"messages": []}',
        "not valid JSON (Unexpected UTF-8 BOM (decode using utf-8-sig) at column 1)",
    ),
    "extra_data": ('{"messages": []} {"x": 1}', "not valid JSON (Extra data at column 18)"),
    "trailing_comma": (
        '{"messages": [],}',
        "not valid JSON (Expecting property name enclosed in double quotes",
    ),
    "an_array": ("[1, 2]", "a JSON list, expected an object {...}"),
}


@pytest.mark.parametrize("kind", sorted(BAD_LINES))
def test_stats_names_the_file_line_and_the_exact_json_problem(tmp_path, kind):
    text, message = BAD_LINES[kind]
    good = {"messages": [{"role": "user", "content": "<image>q"}, {"role": "assistant", "content": "a"}]}
    bad = write_jsonl(tmp_path / "bad.jsonl", [good])
    with open(bad, "a", encoding="utf-8") as fh:
        fh.write(" \x0b\n" + text + "\n")  # a blank line (Python whitespace), then the bad one: line 3
    one_line_error(cli(["stats", bad], tmp_path), 2, f"{bad}:3: {message}")
