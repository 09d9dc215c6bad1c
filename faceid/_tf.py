"""TensorFlow set-up shared by the detector and the embedder: imported only where a model runs."""

from __future__ import annotations

import os
from contextlib import contextmanager

_done = False


@contextmanager
def _stderr_silenced():
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


def quiet_tensorflow() -> None:
    """Import TensorFlow and the packages built on it without their start-up chatter, once per process."""
    global _done
    if _done:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _stderr_silenced():
        import keras  # noqa: F401
        import keras_facenet.inception_resnet_v1  # noqa: F401
        import mtcnn  # noqa: F401
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")
        tf.constant(0.0) + 1.0  # the first op loads oneDNN, which announces itself
    _done = True
