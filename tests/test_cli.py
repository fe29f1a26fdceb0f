"""The command line runs in-process, and bad input gives one line naming the problem, exit code 2."""

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
