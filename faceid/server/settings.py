"""The server's limits and knobs, with their defaults (``faceid serve --help`` shows them as flags)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Settings", "is_loopback"]


@dataclass(frozen=True)
class Settings:
    """Limits and behaviour of one server.

    Attributes:
        auth: require an API key (``False`` only for ``--insecure-no-auth``, or on loopback while
            the gallery has no keys: see :func:`faceid.server.auth`).
        loopback: the server listens on a loopback address only.
        max_body_bytes: largest request body; larger ones get 413 before they are read whole.
        max_pixels: largest image decoded; a larger one (a decompression bomb) gets 413 before decoding.
        max_files: most photos in one enrolment request.
        request_timeout: seconds a request may take, upload included (a stalled client gets 408/503).
        max_uploads: requests with a body processed at once; more get 503 at once with Retry-After.
        batch_wait_ms: how long the micro-batcher waits for company after the first identify job.
        max_batch: most images detected and embedded together.
        batch_workers: batches run at once, each in its own thread over the same models. Two by
            default: one batch alone keeps about 1.5 of 2 cores busy (parts of MTCNN hold the
            GIL or run on one core), and a second batch beside it raised 8 clients' throughput
            from 1.37-1.38x to 1.46-1.48x one client's (``faceid bench --only serve``, which
            compares the two in every round).
        annotated_kept: annotated images kept in memory for their URLs (oldest dropped first).
        compat: serve the CompreFace- and DeepStack-compatible routes (:mod:`faceid.server.compat`).
        remember_unknown: keep the unknown faces of every identify and compatible recognise
            request for review, as ``identify --remember`` does (a request may also ask with ``remember``).
        form_key_slots: DeepStack uploads read at once while their ``api_key`` form field is awaited.
        form_key_timeout: seconds each read of such an upload may take before it is cut off (408).
    """

    auth: bool = True
    loopback: bool = True
    max_body_bytes: int = 25 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_files: int = 20
    request_timeout: float = 60.0
    max_uploads: int = 8
    batch_wait_ms: float = 5.0
    max_batch: int = 16
    batch_workers: int = 2
    annotated_kept: int = 64
    compat: bool = True
    remember_unknown: bool = False
    form_key_slots: int = 2
    form_key_timeout: float = 5.0


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
