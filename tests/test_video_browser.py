"""The annotated video plays in headless Chromium (Debian's, through Playwright): the codec the
installed OpenCV really encodes is one a browser decodes."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading

import pytest
from conftest import save_png, tile_image
from videos import RED, two_people_clip

from faceid.enroll import enroll
from faceid.video import identify_video

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("FACEID_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]

PAGE = """<!doctype html><video id="v" muted playsinline preload="auto" src="%s"></video>
<canvas id="c"></canvas>"""

PROBE = """async () => {
  const v = document.getElementById('v');
  if (v.readyState < 2)
    await new Promise((ok, no) => { v.onloadeddata = ok; v.onerror = () => no(v.error && v.error.code); });
  v.currentTime = 1.5;
  await new Promise(ok => { v.onseeked = ok; });
  const c = document.getElementById('c');
  c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext('2d');
  g.drawImage(v, 0, 0);
  const px = g.getImageData(0, 0, c.width, c.height).data;
  let green = 0;  // the known face's box and label (40, 200, 80): drawn by faceid, not in the clip
  for (let i = 0; i < px.length; i += 4) if (px[i + 1] > 150 && px[i] < 110 && px[i + 2] < 140) green++;
  return {ready: v.readyState, duration: v.duration, width: v.videoWidth, height: v.videoHeight, green: green};
}"""


def test_the_annotated_video_plays_in_chromium(gallery, fake_pipeline, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed (apt-get install chromium)")
    enroll(gallery, "alice", [save_png(tmp_path / "alice.png", tile_image([RED]))], fake_pipeline)
    result = identify_video(
        two_people_clip(tmp_path / "two.mkv"), gallery, fake_pipeline, annotate_dir=tmp_path / "out"
    )
    written = tmp_path / "out" / os.path.basename(result.annotated)
    assert written.is_file() and written.suffix in (".mp4", ".webm")
    (tmp_path / "out" / "index.html").write_text(PAGE % written.name)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "out"))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            try:
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{httpd.server_address[1]}/index.html")
                seen = page.evaluate(PROBE)
            finally:
                browser.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert seen["ready"] >= 2 and (seen["width"], seen["height"]) == (240, 120)
    assert abs(seen["duration"] - 3.0) < 0.2
    assert seen["green"] > 100  # a frame was decoded and drawn, with faceid's box and label on it
