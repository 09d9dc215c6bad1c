"""Numbers on the command line: out of range, infinite or not a number is one line and a non-zero
exit, never a traceback (through the console script's own entry point, as a user runs it)."""

from __future__ import annotations

import sys

import pytest
from conftest import cli

HUGE = "99999999999999999999999"


def run_cli(capsys, monkeypatch, *args: str) -> tuple[int, str]:
    from faceid.cli import run

    monkeypatch.setattr(sys, "argv", ["faceid", *args])
    # in this process TensorFlow may be loaded by an earlier test: run() would then end the process
    monkeypatch.setattr("faceid.cli.FAST_EXIT", False)
    with pytest.raises(SystemExit) as exited:
        run(prog_name="faceid")
    code = exited.value.code
    return (code if isinstance(code, int) else 1), capsys.readouterr().err


@pytest.fixture
def keyed_gallery(gallery_dir):
    cli("keys", "create", "k", "--gallery", gallery_dir)  # makes the gallery
    return str(gallery_dir)


@pytest.mark.parametrize(
    "args",
    [
        ("name", HUGE, "x"),
        ("name", "--", "-" + HUGE, "x"),
        ("move", HUGE, "x"),
        ("move", "1", HUGE, "--unknown"),
        ("serve", "--max-body-mb", "inf"),
        ("serve", "--max-megapixels", "nan"),
        ("serve", "--request-timeout", "1e309"),
        ("serve", "--read-timeout", "-inf"),
        ("serve", "--key-rate", "nan"),
        ("serve", "--key-burst", HUGE),
        ("serve", "--max-uploads", HUGE),
        ("serve", "--port", HUGE),
        ("calibrate", "a", "b", "c", "--fpir", "nan"),
        ("identify", "x.jpg", "--threshold", "inf"),
        ("identify", "x.jpg", "--threshold", "1e309"),
        ("identify", "x.jpg", "--margin", "nan"),
        ("--timeout", "inf", "people"),
        ("--timeout", "1e400", "people"),
        ("eval", "lfw-openset", "--people", HUGE),
        ("eval", "lfw-openset", "--beta", "nan"),
        ("eval", "lfw", "--crop-margin", "inf"),
        ("bench", "--images", HUGE),
    ],
)
def test_a_number_out_of_range_is_one_line_and_a_non_zero_exit(capsys, monkeypatch, keyed_gallery, args):
    gallery = ("--gallery", keyed_gallery) if args[0] in ("name", "move", "serve", "identify") else ()
    code, err = run_cli(capsys, monkeypatch, *args, *gallery)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("faceid: error:"), err
    assert "Traceback" not in err and "OverflowError" not in err
    named = [a for a in args if a.startswith("--") and a not in ("--", "--unknown")]
    if named and args[0] != "calibrate":  # the refusal is about the number, not something else
        assert named[0] in err, err


def test_a_usage_error_names_the_command_to_ask_for_help(capsys, monkeypatch):
    code, err = run_cli(capsys, monkeypatch, "name")
    assert code == 2 and err.strip() == "faceid: error: Missing argument 'group'. (see `faceid name --help`)"
