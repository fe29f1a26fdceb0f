"""Builder options are declared once (``Builder.options``): the command line offers them as flags, the library
checks them, and the builder contract (ids, samples) lives in the base class; imports flow one way."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from support.hostile import cli, one_line_error

from data_builders import BUILDERS, build_jsonl
from text4seg.cli import build_parser

REPO = Path(__file__).resolve().parents[1]


def _dests(parser) -> set[str]:
    return {a.dest for a in parser._actions}


def test_every_builder_declares_its_options_as_flags_that_do_not_shadow_the_shared_ones():
    build = next(a for a in build_parser()._actions if a.dest == "command").choices["build"]
    subs = next(a for a in build._actions if a.dest == "builder").choices
    assert set(subs) == set(BUILDERS)
    shared = {"root", "split", "out", "grid", "scheme", "repeat", "workers", "seed", "skip_bad", "limit"}
    for name, cls in BUILDERS.items():
        names = [o.name for o in cls.declared()]
        assert len(names) == len(set(names)) and not set(names) & shared, name
        assert set(names) <= _dests(subs[name])
        assert all(o.help for o in cls.declared()), name


def test_coco_format_help_lists_its_options_with_defaults(tmp_path):
    p = cli(["build", "coco-format", "--help"], tmp_path)
    assert p.returncode == 0
    for flag in (
        "--ann",
        "--task {referring,semantic,instance}",
        "--absent-rate",
        "--split-ratio",
        "--no-check-images",
    ):
        assert flag in p.stdout
    assert "(default: 0.25)" in p.stdout


def test_real_flags_build_what_the_library_builds_with_the_same_options(tmp_path):
    out = tmp_path / "cli.jsonl"
    flags = ["--image-size", "32", "--num-images", "3", "--colors", "red,green,blue", "--absent-rate", "0"]
    p = cli(["build", "synthetic", "--out", out, "--root", tmp_path / "img", *flags], tmp_path)
    assert p.returncode == 0, p.stderr
    opts = {"image_size": 32, "num_images": 3, "colors": ["red", "green", "blue"], "absent_rate": 0.0}
    lib = tmp_path / "lib.jsonl"
    build_jsonl("synthetic", lib, root=tmp_path / "img", options=opts)
    assert out.read_bytes() == lib.read_bytes() and json.loads(p.stdout)["samples"] == 3


@pytest.mark.parametrize(
    "args,names",
    [
        (["--num-imagess", "5"], ["--num-imagess"]),  # a mistyped flag: argparse's message, one line
        (["--absent-rate", "lots"], ["absent_rate", "lots", "a number"]),
        (["--num-images", "2.5"], ["num_images", "2.5", "an integer"]),
        (["--empty-targets", "sometimes"], ["empty_targets", "sometimes", "drop"]),
        (["--ann", "x.json"], ["--ann"]),  # another builder's option
    ],
)
def test_an_unknown_or_mistyped_option_is_one_line_and_writes_nothing(tmp_path, args, names):
    out = tmp_path / "o.jsonl"
    one_line_error(cli(["build", "synthetic", "--out", out, "--limit", "2", *args], tmp_path), 2, *names)
    assert not out.exists()


def test_build_takes_no_set_pass_through(tmp_path):
    out = tmp_path / "o.jsonl"
    p = cli(["build", "synthetic", "--out", out, "--set", "num_images=2"], tmp_path)
    one_line_error(p, 2, "--set")
    assert not out.exists()


def test_library_options_are_checked_by_the_builder_naming_builder_key_and_allowed_set(tmp_path):
    with pytest.raises(ValueError, match=r"\['num_imagess'\] for builder 'synthetic'.*num_images"):
        build_jsonl("synthetic", tmp_path / "o.jsonl", options={"num_imagess": 5})
    with pytest.raises(ValueError, match="image_dir.*mask-folder"):  # hf-refer's option, not mask-folder's
        build_jsonl("mask-folder", tmp_path / "o.jsonl", root=tmp_path, options={"image_dir": "x"})
    with pytest.raises(ValueError, match="keep_crowd='maybe'.*true or false"):
        build_jsonl("grefcoco", tmp_path / "o.jsonl", root=tmp_path, options={"keep_crowd": "maybe"})
    assert not (tmp_path / "o.jsonl").exists()


def test_sample_ids_follow_the_one_formula_of_the_base_class(tmp_path):
    from data_builders.base import make_config
    from data_builders.synthetic import Synthetic

    b = Synthetic(make_config(None, "val", tmp_path / "o.jsonl"))
    assert b.sample_id("000003", 1) == "synthetic/val/000003/1"
    assert b.sample_id("000003", 1, rep=2) == "synthetic/val/000003/1/r2"
    assert b.sample_id(7, split="testA") == "synthetic/testA/7"
    s = b.sample("x", image="i.png", width=4, height=4, turns=[], task="res")
    assert (s.id, s.grid, s.scheme) == ("x", b.cfg.grid, b.cfg.scheme)
    assert b.rng("k").random() == b.rng("k").random()


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_inside_text4seg_only_the_command_line_and_the_demo_import_data_builders():
    allowed = {REPO / "text4seg" / "commands", REPO / "text4seg" / "demo"}
    offenders = [
        str(p.relative_to(REPO))
        for p in (REPO / "text4seg").rglob("*.py")
        if "data_builders" in _imports(p) and p.parent not in allowed
    ]
    assert offenders == []
