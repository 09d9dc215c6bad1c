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
        request_timeout: seconds a request may take, upload and waiting for a slot included (a
            request still waiting for a slot or for its body then gets 503/408).
        read_timeout: seconds an upload may go without a byte arriving before it is cut off (408).
        max_uploads: requests with a body processed at once, over all keys; more wait for a slot
            (in arrival order) within ``request_timeout``, then get 503 with Retry-After.
        key_concurrency: requests of one API key (or, without keys, one client address) handled
            at once; a key's further requests wait their turn, so one key cannot hold every slot.
        key_rate: requests per second one key may start, on average (a token bucket)...
        key_burst: ...and at once after a quiet spell; a request beyond them waits for its token
            within ``request_timeout`` (429 with Retry-After if that would take longer). The
            defaults (50 a second, bursts of 100) are above what 2 cores answer (27 identify
            requests a second from 8 clients, ``faceid bench --only serve``), so they hold back
            only a client that sends more than the server can do; fairness between keys comes
            from ``key_concurrency``.
        working_side: longer side, in pixels, that uploaded photos are decoded at (JPEG's reduced
            decoding, else Pillow's ``reduce``): twice the detector's default 1600, so detection
            sees what it would see at full size and faces are cropped at twice that detail.
        memory_mb: decoded images held at once by the whole server, in MB (each counted at
            :data:`faceid.server.budget.BYTES_PER_PIXEL` per working pixel); requests beyond it wait.
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
        max_video_bytes: largest video on ``POST /v1/identify`` (that route's body may be this
            large; a photo there is still held to ``max_body_bytes``).
        max_video_seconds: longest video on ``POST /v1/identify``, in seconds (422 beyond it); its
            identification must also finish within ``request_timeout``.
    """

    auth: bool = True
    loopback: bool = True
    max_body_bytes: int = 25 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_files: int = 20
    request_timeout: float = 60.0
    read_timeout: float = 10.0
    max_uploads: int = 8
    key_concurrency: int = 6
    key_rate: float = 50.0
    key_burst: int = 100
    working_side: int = 3200
    memory_mb: int = 1024
    batch_wait_ms: float = 5.0
    max_batch: int = 16
    batch_workers: int = 2
    annotated_kept: int = 64
    compat: bool = True
    remember_unknown: bool = False
    form_key_slots: int = 2
    form_key_timeout: float = 5.0
    max_video_bytes: int = 50 * 1024 * 1024
    max_video_seconds: float = 60.0

    def body_limit(self, path: str) -> int:
        """Largest request body on ``path``: ``POST /v1/identify`` also takes videos."""
        return max(self.max_body_bytes, self.max_video_bytes) if path == "/v1/identify" else self.max_body_bytes


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
