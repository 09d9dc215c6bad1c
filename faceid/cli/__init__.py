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

__all__ = ["app", "printable", "run"]


def run(prog_name: str | None = None) -> None:  # console-script entry point
    """Run the command. Once TensorFlow is loaded, the process ends without Python's final
    tear-down of the interpreter: that took 2-4 s of a cold ``faceid identify`` (every module's
    namespace and TensorFlow's sessions freed one by one) after every result was printed and
    every file closed. The ``atexit`` handlers (logging's flush, temporary files) still run."""
    try:
        app(prog_name=prog_name)
        code: str | int | None = 0
    except SystemExit as exc:
        code = exc.code
    if "tensorflow" not in sys.modules:
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
