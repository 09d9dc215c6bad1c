"""An RTSP server on 127.0.0.1 for the watch tests: GStreamer's gst-rtsp-server (Debian's
``gir1.2-gst-rtsp-server-1.0`` and ``gstreamer1.0-plugins-good``, through the system ``python3-gi``),
serving a folder of JPEG frames, looped, as RTP/JPEG at ``rtsp://127.0.0.1:PORT/faces``.

Run by the tests with the system Python (the one with ``gi``): ``python3 rtsp_server.py PORT FOLDER FPS``.
It prints ``ready`` once listening and serves until killed (the tests kill it to drop the stream).
"""

from __future__ import annotations

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main(port: str, folder: str, fps: str) -> None:
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        # decoded and re-encoded through videorate: multifilesrc stamps only its first frame, and
        # unstamped frames would flood out at once instead of at FPS
        f'( multifilesrc location="{folder}/%03d.jpg" loop=true caps="image/jpeg,framerate={fps}/1" '
        f"! jpegdec ! videorate ! video/x-raw,framerate={fps}/1 ! jpegenc quality=95 "
        "! rtpjpegpay name=pay0 pt=26 )"
    )
    factory.set_shared(True)
    server.get_mount_points().add_factory("/faces", factory)
    if server.attach(None) == 0:
        sys.exit(f"rtsp_server: cannot listen on 127.0.0.1:{port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main(*sys.argv[1:4])
