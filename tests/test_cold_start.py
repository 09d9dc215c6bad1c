"""The cold start's parts: the embedding network loaded beside detection, read once."""

from __future__ import annotations

import threading

import numpy as np
import pytest


@pytest.mark.model
def test_sface_loaded_in_the_background_is_the_net_the_embedding_thread_uses(monkeypatch):
    import cv2

    from faceid.embed_onnx import OnnxEmbedder

    reads = []
    real = cv2.dnn.readNetFromONNX

    def counting(path):
        reads.append(threading.current_thread().name)
        return real(path)

    monkeypatch.setattr(cv2.dnn, "readNetFromONNX", counting)
    crops = np.random.default_rng(0).integers(0, 255, (3, 112, 112, 3), dtype=np.uint8)
    embedder = OnnxEmbedder("sface")
    embedder.expect(3)

    def embed_in(name: str) -> np.ndarray:
        """Embed in a new thread: this one may hold a net of an earlier test's embedder already."""
        rows = []
        worker = threading.Thread(target=lambda: rows.append(embedder.embed(crops)), name=name)
        worker.start()
        worker.join()
        assert len(rows) == 1, f"embedding in thread {name} failed"
        return rows[0]

    early = embed_in("first")
    assert reads == ["faceid-embedder-load"]  # read once, in the loading thread, then used by the first caller
    later = embed_in("other")
    assert reads == ["faceid-embedder-load", "other"]  # another thread reads its own (nets keep per-call state)
    np.testing.assert_allclose(later, early, atol=1e-6)
    reference = OnnxEmbedder("sface", runtime="onnxruntime").embed(crops)
    np.testing.assert_allclose(early, reference, atol=1e-5)
