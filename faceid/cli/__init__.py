"""The ``faceid`` command: parses arguments, calls the library, formats what it returns.

No thresholds, enrolment rules or search logic live here. A :class:`~faceid.errors.FaceIDError`
becomes one line on stderr and exit status 1; a batch that had any bad input exits 1 after
reporting every input.
"""

from __future__ import annotations

import sys

# The command modules register their commands on ``app`` when imported; the order of these
# imports is the order of ``faceid --help``.
from faceid.cli._common import app, printable

# isort: off
from faceid.cli import models  # noqa: F401  (models pull/list/verify)
from faceid.cli import people  # noqa: F401  (enroll, identify, people, rename, remove)
from faceid.cli import verify  # noqa: F401  (verify)
from faceid.cli import unknown  # noqa: F401  (clusters, name, faces, move, merge, forget, log)
from faceid.cli import gallery  # noqa: F401  (gallery check/rebuild-index/migrate/stats/retention)
from faceid.cli import backup  # noqa: F401  (gallery backup/restore)
from faceid.cli import serve  # noqa: F401  (keys create/list/revoke, serve)
from faceid.cli import measure  # noqa: F401  (calibrate, eval lfw/lfw-openset/cluster/verify, bench)
from faceid.cli import video  # noqa: F401  (watch; videos in identify; eval video)
from faceid.cli import demo  # noqa: F401  (demo)
# isort: on

__all__ = ["FAST_EXIT", "app", "printable", "run"]


#: End the process with ``os._exit`` once TensorFlow is loaded (see :func:`run`). A caller that runs
#: the command inside a longer-lived process (a test calling :func:`run`) sets it False.
FAST_EXIT = True


def run(prog_name: str | None = None) -> None:  # console-script entry point
    """Run the command. Once TensorFlow is loaded, the process ends without Python's final
    tear-down of the interpreter: that took 2-4 s of a cold ``faceid identify`` (every module's
    namespace and TensorFlow's sessions freed one by one) after every result was printed and
    every file closed. The ``atexit`` handlers (logging's flush, temporary files) still run."""
    try:  # typer >= 0.20 carries its own copy of click
        from typer._click.exceptions import ClickException
    except ImportError:  # pragma: no cover - older typer, on click itself
        from click.exceptions import ClickException  # type: ignore[assignment]
    import typer

    from faceid.cli._common import err

    try:
        # not standalone: a usage error (a value out of range, a missing argument) is one line
        # here, as every other error is, instead of click's framed panel
        returned = app(prog_name=prog_name, standalone_mode=False)
        code: str | int | None = returned if isinstance(returned, int) else 0
    except ClickException as exc:
        where = getattr(getattr(exc, "ctx", None), "command_path", None) or "faceid"
        message = " ".join(exc.format_message().split())
        if type(exc).__name__ != "NoArgsIsHelpError":  # that one has shown the help already
            err(f"faceid: error: {message} (see `{where} --help`)")
        code = exc.exit_code
    except typer.Abort:
        err("faceid: aborted")
        code = 1
    except SystemExit as exc:
        code = exc.code
    if not FAST_EXIT or "tensorflow" not in sys.modules:
        sys.exit(code)
    import atexit
    import os

    status = 0 if code is None else code if isinstance(code, int) else 1
    if isinstance(code, str):
        print(code, file=sys.stderr)
    try:
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


if __name__ == "__main__":
    run()
