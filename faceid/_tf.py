"""TensorFlow set-up shared by the detector and the embedder: imported only where a model runs."""

from __future__ import annotations

import importlib
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_imported: set[str] = set()
_lock = threading.Lock()


@contextmanager
def stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for a moment: TensorFlow's C++ start-up messages
    (absl's "All log messages before absl::InitializeLog()", oneDNN notices) ignore
    TF_CPP_MIN_LOG_LEVEL. Python exceptions are unaffected: they are raised, not printed here."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all
        yield
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextmanager
def _without_sklearn() -> Iterator[None]:
    """Make ``import sklearn`` fail for a moment, unless it is already loaded.

    ``import tensorflow`` loads all of Keras 3, and Keras imports scikit-learn (and through it
    scipy.stats) only for its optional scikit-learn wrappers, inside ``try: ... except
    ImportError``. faceid never uses those wrappers; skipping that import saves about 0.8 s of
    CPU on every cold start (``faceid bench --only coldstart``). scikit-learn itself stays
    importable afterwards (``faceid eval`` uses it).
    """
    if "sklearn" in sys.modules:
        yield
        return
    sys.modules["sklearn"] = None  # type: ignore[assignment]  # the import system's "not importable"
    try:
        yield
    finally:
        if sys.modules.get("sklearn", 0) is None:
            del sys.modules["sklearn"]


def quiet_tensorflow(*modules: str) -> None:
    """Import TensorFlow (and then ``modules``, packages built on it) without their start-up
    chatter, each once per process. Safe to call from several threads at once."""
    wanted = ["tensorflow", *modules]
    if all(name in _imported for name in wanted):
        return
    with _lock:
        todo = [name for name in wanted if name not in _imported]
        if not todo:
            return
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        with stderr_silenced(), _without_sklearn():
            for name in todo:
                module = importlib.import_module(name)
                if name == "tensorflow":
                    module.get_logger().setLevel("ERROR")
                    module.constant(0.0) + 1.0  # the first op loads oneDNN, which announces itself
                _imported.add(name)
