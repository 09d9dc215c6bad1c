"""A multipart/x-mixed-replace (MJPEG) HTTP server on 127.0.0.1 for the watch tests, as cameras
serve it; each connection sends ``per_connection`` frames then drops, ``connections`` times."""

from __future__ import annotations

import http.server
import threading
import time


class MjpegServer:
    def __init__(self, jpegs: list[bytes], *, fps: float = 10.0, per_connection: int | None = None) -> None:
        self.jpegs, self.fps = jpegs, fps
        self.per_connection = per_connection or len(jpegs)
        self.connections = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                start = server.connections * server.per_connection
                server.connections += 1
                frames = server.jpegs[start : start + server.per_connection]
                if not frames:
                    self.send_error(503, "no more frames")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    for jpeg in frames:
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n")
                        self.wfile.write(f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                        self.wfile.flush()
                        time.sleep(1.0 / server.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True  # the drop

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/stream.mjpg"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> MjpegServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
