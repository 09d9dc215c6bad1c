"""TensorFlow set-up shared by the detector and the embedder: imported only where a model runs."""

from __future__ import annotations

import os

_done = False


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up chatter, once per process."""
    global _done
    if _done:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    _done = True
