"""The command line runs in-process, and bad input gives one line naming the problem, exit code 2."""

import subprocess
import sys

import pytest

from text4seg import cli


def test_every_registered_command_has_help(capsys):
    for name in cli.COMMANDS:
        with pytest.raises(SystemExit) as info:
            cli.main([name, "--help"])
        assert info.value.code == 0
        assert name in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys):
    assert cli.main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_bad_input_is_one_line_not_a_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TEXT4SEG_DEBUG", raising=False)
    missing = tmp_path / "missing.jsonl"
    assert cli.main(["stats", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert "missing.jsonl" in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_unknown_builder_lists_the_valid_ones(tmp_path, capsys):
    assert cli.main(["build", "nope", "--out", str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "'nope'" in err and "synthetic" in err and "refcoco" in err
    assert not (tmp_path / "x.jsonl").exists()


LONG_RUNNING = ("build", "predict", "decode", "evaluate", "train", "export")


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_long_running_commands_offer_quiet_and_no_progress(name, capsys):
    with pytest.raises(SystemExit):
        cli.main([name, "--help"])
    out = capsys.readouterr().out
    assert "--quiet" in out and "--no-progress" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["build", "synthetic", "--scheme", "nope"],
        ["decode", "--text", "x", "--size", "4x4", "--scheme", "nope"],
        ["predict", "--model", "m", "--image", "a.png", "--query", "q", "--scheme", "nope"],
    ],
)
def test_unknown_scheme_is_one_line_listing_the_choices(argv, tmp_path, capsys):
    from text4seg.descriptors import SCHEMES

    assert cli.main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"text4seg {argv[0]}") and ": error:" in err
    assert "'nope'" in err and all(s in err for s in SCHEMES)


@pytest.mark.parametrize(
    "cmd", ["build synthetic", "decode --text x --size 4x4", "predict --model m --jsonl j"]
)
@pytest.mark.parametrize("grid", ["0", "4x", "16x16x2", "big"])
def test_bad_grid_is_one_line_naming_the_value(cmd, grid, tmp_path, capsys):
    assert cli.main([*cmd.split(), "--grid", grid, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--grid" in err and repr(grid) in err


def test_grid_rows_by_cols_reaches_the_built_rows(tmp_path):
    from text4seg.data.jsonl import read_jsonl

    out = tmp_path / "b.jsonl"
    argv = [
        "build",
        "synthetic",
        "--out",
        str(out),
        "--grid",
        "8x12",
        "--limit",
        "2",
        "--quiet",
        "--no-stats",
    ]
    assert cli.main(argv) == 0
    assert [r["text4seg"]["grid"] for r in read_jsonl(out)] == [[8, 12], [8, 12]]


def test_decode_has_root_not_images(tmp_path, capsys):
    assert cli.main(["decode", "r.jsonl", "--out", str(tmp_path), "--images", str(tmp_path)]) == 2
    assert "--images" in capsys.readouterr().err


def test_quiet_restores_environment_and_logger_levels_after_an_in_process_command(tmp_path, monkeypatch):
    import logging
    import os

    monkeypatch.delenv("LOG_LEVEL", raising=False)
    swift_logger = logging.getLogger("swift")
    before = swift_logger.level
    out = tmp_path / "s.jsonl"
    assert cli.main(["build", "synthetic", "--out", str(out), "--limit", "2", "--no-stats", "--quiet"]) == 0
    assert "LOG_LEVEL" not in os.environ
    assert swift_logger.level == before


def test_quiet_silences_library_loggers_only_inside_the_block(monkeypatch):
    import logging
    import os

    from text4seg._lazy import quiet_libraries

    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    lg = logging.getLogger("swift")
    handler = logging.StreamHandler()
    handler.setLevel(logging.INFO)
    lg.addHandler(handler)
    monkeypatch.setattr(lg, "level", logging.INFO)
    try:
        with quiet_libraries():
            assert os.environ["LOG_LEVEL"] == "WARNING"
            assert lg.level == handler.level == logging.WARNING
        assert os.environ["LOG_LEVEL"] == "DEBUG"
        assert lg.level == handler.level == logging.INFO
    finally:
        lg.removeHandler(handler)


@pytest.mark.parametrize("name", ("predict", "train", "export", "demo"))
def test_commands_that_load_libraries_offer_verbose(name, capsys):
    with pytest.raises(SystemExit):
        cli.main([name, "--help"])
    out = capsys.readouterr().out
    assert "--verbose" in out and "--quiet" in out


def test_library_noise_off_drops_the_trust_remote_code_note_and_library_warnings_only_inside(monkeypatch):
    import io
    import logging
    import os
    import warnings

    from text4seg._lazy import library_noise_off

    monkeypatch.delenv("PYTHONWARNINGS", raising=False)
    lg = logging.getLogger("swift")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    lg.addHandler(handler)
    monkeypatch.setattr(lg, "level", logging.INFO)
    note = "Loading model from '/m' with trust_remote_code=True. Only proceed if you trust the source."
    try:
        with library_noise_off(), warnings.catch_warnings(record=True) as caught:
            lg.warning(note)
            lg.warning("a real problem")
            warnings.warn_explicit("library noise", FutureWarning, "lib.py", 1, module="torch.jit._script")
            warnings.warn_explicit("ours", UserWarning, "x.py", 1, module="text4seg.data.x")
            assert os.environ["PYTHONWARNINGS"] == "ignore" and os.environ["LOG_LEVEL"] == "WARNING"
        assert stream.getvalue() == "a real problem\n"
        assert [str(w.message) for w in caught] == ["ours"]
        assert "PYTHONWARNINGS" not in os.environ
        lg.warning(note)  # restored: outside the block (and with --verbose) the note shows
        assert "trust_remote_code" in stream.getvalue()
    finally:
        lg.removeHandler(handler)


def test_child_env_of_swift_is_quiet_unless_verbose(monkeypatch):
    from text4seg.training.run import _child_env

    monkeypatch.delenv("LOG_LEVEL", raising=False)
    monkeypatch.delenv("PYTHONWARNINGS", raising=False)
    quiet = _child_env({"NPROC_PER_NODE": "1"}, verbose=False, progress=True)
    assert quiet["LOG_LEVEL"] == "WARNING" and quiet["PYTHONWARNINGS"] == "ignore"
    assert quiet["NPROC_PER_NODE"] == "1" and "TQDM_DISABLE" not in quiet  # progress bars stay
    loud = _child_env({}, verbose=True, progress=False)
    assert "LOG_LEVEL" not in loud and "PYTHONWARNINGS" not in loud and loud["TQDM_DISABLE"] == "1"
    assert (
        _child_env({"LOG_LEVEL": "INFO"}, verbose=False, progress=True)["LOG_LEVEL"] == "INFO"
    )  # recipe wins


def test_a_command_imports_only_its_own_module():
    code = (
        "import sys; from text4seg.cli import build_parser; build_parser('merge'); "
        "print(sorted(m for m in sys.modules if m.startswith(('data_builders', 'text4seg.commands.'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['text4seg.commands.merge']"  # not the builders, not the other commands
