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
    ],
)
def test_a_number_out_of_range_is_one_line_and_a_non_zero_exit(capsys, monkeypatch, keyed_gallery, args):
    code, err = run_cli(capsys, monkeypatch, *args, "--gallery", keyed_gallery)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("faceid: error:"), err
    assert "Traceback" not in err and "OverflowError" not in err


def test_a_usage_error_names_the_command_to_ask_for_help(capsys, monkeypatch):
    code, err = run_cli(capsys, monkeypatch, "name")
    assert code == 2 and err.strip() == "faceid: error: Missing argument 'group'. (see `faceid name --help`)"
