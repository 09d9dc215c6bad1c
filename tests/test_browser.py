"""The real server (`faceid serve` in a subprocess, real models, 127.0.0.1, a free port) driven
through its page in headless Chromium, as a person would use it; then stopped with SIGTERM while
a request is in flight. Screenshots go to out/browser/ (look at them)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, SAMPLES

pytestmark = pytest.mark.model

CHROMIUM = os.environ.get("FACEID_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = ROOT / "out" / "browser"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`faceid serve` in a subprocess; its stderr goes to a file for when something fails."""

    def __init__(self, gallery: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "faceid", "serve", "--gallery", str(gallery), "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=open(log, "wb"),  # noqa: SIM115 - closed with the process
            env=env,
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"faceid serve exited {self.process.returncode}: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    if json.load(r)["status"] == "ok":
                        return
            except OSError:
                time.sleep(0.5)
        self.process.kill()
        raise AssertionError(f"faceid serve did not answer within 180 s: {log.read_text()[-2000:]}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise
        return self.process.returncode


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("fastapi")
    from faceid.errors import ModelNotFoundError
    from faceid.models import locate

    try:
        locate()
    except ModelNotFoundError as exc:
        pytest.skip(f"FaceNet weights are not installed ({exc})")
    root = tmp_path_factory.mktemp("serve")
    s = Server(root / "gallery", root / "server.log")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def wait_until(page, expression: str, timeout_s: float = 60) -> None:
    """Poll a JavaScript expression until it is truthy. ``page.wait_for_function`` compiles its
    predicate with ``new Function`` inside the page, which the server's policy (no 'unsafe-eval')
    may refuse; ``page.evaluate`` runs it through the debugger protocol, outside the policy."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout_s:g} s: {expression}")
        time.sleep(0.1)


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_the_page_enrols_identifies_renames_and_removes(server, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(server.url + "/")
    page.wait_for_selector("#identify")

    # Enrol each sample person through the page: their photos, their name.
    page.click("#tab-people")
    people = sorted(p.name for p in (SAMPLES / "people").iterdir() if p.is_dir())
    for person in people:
        photos = sorted(str(f) for f in (SAMPLES / "people" / person).iterdir() if f.suffix.lower() in (".jpg", ".png"))
        page.fill("#enrol-name", person)
        page.set_input_files("#enrol-files", photos)
        page.click("#enrol button[type=submit]")
        page.wait_for_selector(f'.person[data-name="{person}"] .thumb img[src^="blob:"]', timeout=120_000)
        assert page.locator("#enrol-results li.added").count() >= 1, page.inner_text("#enrol-results")
    shot(page, "1-people-enrolled")
    for person in people:
        count = page.inner_text(f'.person[data-name="{person}"] .person-count')
        assert count.endswith("face") or count.endswith("faces")

    # Identify the sample group photo: the names appear beside it, the labelled image above.
    page.click("#tab-identify")
    page.set_input_files("#identify-file", str(SAMPLES / "photos" / "obama_and_biden.jpg"))
    page.wait_for_selector("#identify-faces li.face", timeout=120_000)
    wait_until(page, "document.getElementById('identify-image').naturalWidth > 0")
    names = page.locator("#identify-faces li.face.known strong").all_inner_texts()
    assert sorted(names) == ["barack_obama", "joe_biden"], names
    shot(page, "2-identified")

    # A photo with a face no one enrolled: unknown, shown differently.
    page.set_input_files("#identify-file", str(SAMPLES / "photos" / "astronaut.jpg"))
    page.wait_for_selector("#identify-faces li.face.unknown", timeout=60_000)
    shot(page, "3-unknown")
    # The page's switch keeps the unknown faces for review (POST /v1/identify?remember=true).
    page.check("#identify-remember")
    page.set_input_files("#identify-file", str(SAMPLES / "photos" / "astronaut.jpg"))
    # (a locator, not a string predicate: the page's CSP forbids the eval Playwright would need)
    page.locator("#identify-faces li.face.unknown", has_text="kept for review").first.wait_for(timeout=60_000)
    page.uncheck("#identify-remember")
    gallery = Path(server.log).parent / "gallery"
    forgot = subprocess.run(  # the review test below starts with no kept faces
        [sys.executable, "-m", "faceid", "forget", "--unknown", "-g", str(gallery)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert "forgot 1 unknown faces" in forgot.stdout, forgot.stderr

    # Bad input: the API's words, on the page.
    page.set_input_files(
        "#identify-file", files=[{"name": "notes.jpg", "mimeType": "image/jpeg", "buffer": b"not a photo"}]
    )
    page.wait_for_selector("#identify-message.error")
    assert "notes.jpg: not an image" in page.inner_text("#identify-message")
    shot(page, "4-error")

    # A photo with several faces: the page asks which face is the person's.
    page.click("#tab-people")
    page.fill("#enrol-name", "joe_biden")
    page.set_input_files("#enrol-files", str(SAMPLES / "photos" / "obama_and_biden.jpg"))
    page.click("#enrol button[type=submit]")
    page.wait_for_selector("#chooser:not([hidden]) .face-box >> nth=1", timeout=120_000)
    assert "obama_and_biden.jpg shows 2 faces" in page.inner_text("#chooser-text")
    assert "2 faces found: choose the face below" in page.inner_text("#enrol-results li.failed")
    shot(page, "5-choose-a-face")
    page.locator("#chooser .face-box").nth(1).click()  # Biden stands on the right
    page.wait_for_selector("#enrol-results li.added")
    page.wait_for_selector('.person[data-name="joe_biden"] .thumb >> nth=1')
    assert page.inner_text('.person[data-name="joe_biden"] .person-count') == "2 faces"

    # Rename, then remove (with confirmation) a person.
    card = page.locator('.person[data-name="grace_hopper"]')
    card.locator("button.rename").click()
    card.locator(".rename-input").fill("Grace Hopper")
    card.locator(".rename-form button[type=submit]").click()
    page.wait_for_selector('.person[data-name="Grace Hopper"]')
    assert "Renamed grace_hopper to Grace Hopper." in page.inner_text('.person[data-name="Grace Hopper"] .message')
    page.locator('.person[data-name="Grace Hopper"] button.remove').click()
    page.wait_for_selector("dialog#confirm[open]")
    shot(page, "6-confirm-remove")
    page.click("#confirm-ok")
    page.wait_for_selector('.person[data-name="Grace Hopper"]', state="detached")
    assert "Removed Grace Hopper" in page.inner_text("#people-message")
    shot(page, "7-removed")
    with urllib.request.urlopen(server.url + "/v1/people") as r:
        assert [p["name"] for p in json.load(r)] == ["barack_obama", "joe_biden"]

    # A name with the characters that break URL paths: enrolled, shown, renamed and removed as any other.
    odd = "AC/DC? #1 100%"
    page.fill("#enrol-name", odd)
    page.set_input_files("#enrol-files", str(SAMPLES / "photos" / "astronaut.jpg"))
    page.click("#enrol button[type=submit]")
    page.wait_for_selector(f'.person[data-name="{odd}"] .thumb img[src^="blob:"]', timeout=120_000)
    assert page.inner_text(f'.person[data-name="{odd}"] .person-count') == "1 face"
    shot(page, "7b-odd-name")
    card = page.locator(f'.person[data-name="{odd}"]')
    card.locator("button.rename").click()
    card.locator(".rename-input").fill("a/../b")
    card.locator(".rename-form button[type=submit]").click()
    page.wait_for_selector('.person[data-name="a/../b"]')
    page.locator('.person[data-name="a/../b"] button.remove').click()
    page.wait_for_selector("dialog#confirm[open]")
    page.click("#confirm-ok")
    page.wait_for_selector('.person[data-name="a/../b"]', state="detached")
    assert "Removed a/../b (1 face)" in page.inner_text("#people-message")
    page.fill("#enrol-name", "..")
    page.set_input_files("#enrol-files", str(SAMPLES / "photos" / "astronaut.jpg"))
    page.click("#enrol button[type=submit]")
    page.wait_for_selector("#enrol-message.error")
    assert "cannot be used in a URL path" in page.inner_text("#enrol-message")
    with urllib.request.urlopen(server.url + "/v1/people") as r:
        assert [p["name"] for p in json.load(r)] == ["barack_obama", "joe_biden"]
    assert problems == []
    page.close()


def test_the_page_asks_for_a_key_when_one_is_needed(server, browser):
    gallery = Path(server.log).parent / "gallery"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    keys = [sys.executable, "-m", "faceid", "keys"]
    out = subprocess.run(
        [*keys, "create", "browser", "--gallery", str(gallery)], capture_output=True, text=True, env=env, check=True
    )
    key = out.stdout.strip().splitlines()[-1]
    try:  # the key is revoked whatever happens: the later tests talk to the server without one
        page = browser.new_page(viewport={"width": 1280, "height": 700})
        page.goto(server.url + "/#people")
        page.wait_for_selector("#key-form:not([hidden])")
        page.fill("#key-input", "fid_wrong")
        page.click("#key button[type=submit]")
        # the page's first request (no key) already said "needs an API key": wait for the answer to this one
        wait_until(page, "document.querySelector('#key-message.error')?.textContent.includes('unknown or revoked')")
        assert "unknown or revoked API key" in page.inner_text("#key-message")
        page.fill("#key-input", key)
        page.click("#key button[type=submit]")
        page.wait_for_selector('.person[data-name="joe_biden"]')
        shot(page, "8-with-key")
        page.close()
    finally:
        subprocess.run(
            [*keys, "revoke", "browser", "--gallery", str(gallery)], env=env, check=True, capture_output=True
        )


def test_the_api_docs_render_offline(server, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    external: list[str] = []
    page.on("request", lambda r: external.append(r.url) if not r.url.startswith(server.url) else None)
    page.goto(server.url + "/docs")
    page.locator(".swagger-ui .opblock-summary-path", has_text="/v1/identify").first.wait_for(timeout=60_000)
    assert "faceid" in page.inner_text(".swagger-ui .info .title")
    shot(page, "9-api-docs")
    assert [u for u in external if not u.startswith(("data:", "blob:"))] == []  # nothing from elsewhere
    page.close()


def test_the_page_reviews_unknown_faces_names_a_group_and_takes_a_face_out(server, browser, tmp_path):
    from PIL import Image, ImageEnhance, ImageOps

    # Photos of Grace Hopper (removed from the gallery above): the sample re-encoded, brighter,
    # smaller, mirrored (each its own file, so each face its own photo).
    hopper = Image.open(SAMPLES / "people" / "grace_hopper" / "hopper.jpg").convert("RGB")
    variants = [
        hopper,
        ImageEnhance.Brightness(hopper).enhance(1.1),
        hopper.resize((hopper.width * 9 // 10, hopper.height * 9 // 10)),
        ImageOps.mirror(hopper),
    ]
    photos = [tmp_path / f"hopper-{i}.jpg" for i in range(len(variants))]
    for image, path in zip(variants, photos):
        image.save(path, quality=90)
    gallery = Path(server.log).parent / "gallery"
    out = subprocess.run(  # the command line keeps the unknown faces, in another process
        [sys.executable, "-m", "faceid", "identify", *map(str, photos), "--remember", "--json", "-g", str(gallery)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert [json.loads(line)["faces"][0]["status"] for line in out.stdout.splitlines()] == ["unknown"] * len(photos)

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(server.url + "/#review")
    page.wait_for_selector('.group .thumb img[src^="blob:"]', timeout=60_000)
    grouped = page.locator(".group .thumb").count()
    assert page.locator(".group").count() == 1 and grouped >= 3, grouped  # they look alike
    wait_until(page, "[...document.querySelectorAll('.group .thumb img')].every((i) => i.naturalWidth > 0)")
    shot(page, "10-review-a-group")

    # A face that is not the group's person: take it out (it stays unknown, in no group).
    wrong = page.locator(".group .thumb").nth(1).get_attribute("data-face")
    page.locator(".group .thumb").nth(1).locator("button.take-out").click()
    page.wait_for_selector(f'.group .thumb[data-face="{wrong}"]', state="detached")
    assert page.locator(".group .thumb").count() == grouped - 1
    assert f"Took face {wrong} out of group" in page.inner_text(".group .message")

    # Name the group: its faces are Grace Hopper's, and identify names her at once.
    page.fill(".group .name-input", "Grace Hopper")
    page.click(".group .name-form button[type=submit]")
    page.wait_for_selector("#review-empty:not([hidden])")
    assert f"{grouped - 1} faces of Grace Hopper, newly enrolled" in page.inner_text("#review-message")
    shot(page, "11-review-named")
    with urllib.request.urlopen(server.url + "/v1/people") as r:
        assert {p["name"]: p["faces"] for p in json.load(r)}["Grace Hopper"] == grouped - 1
    page.click("#tab-identify")
    page.set_input_files("#identify-file", str(SAMPLES / "people" / "grace_hopper" / "hopper.jpg"))
    page.wait_for_selector("#identify-faces li.face", timeout=120_000)
    assert page.locator("#identify-faces li.face.known strong").all_inner_texts() == ["Grace Hopper"]
    assert problems == []
    page.close()


def test_the_page_asks_is_this_x_accepts_one_rejects_another_and_shows_faces_in_no_group(server, browser, tmp_path):
    """Photos of the astronaut are kept while nobody knows her; then she is enrolled from another
    photo: the page asks "Is this Eileen Collins?" of the kept faces; Accept makes one hers, Reject
    keeps the other unknown and is remembered (the gallery, read by the API, agrees)."""
    from PIL import Image, ImageEnhance, ImageOps

    astronaut = Image.open(SAMPLES / "photos" / "astronaut.jpg").convert("RGB")
    kept_photos = [tmp_path / "eileen-kept-0.jpg", tmp_path / "eileen-kept-1.jpg"]
    astronaut.save(kept_photos[0], quality=90)
    ImageOps.mirror(astronaut).save(kept_photos[1], quality=90)
    enrol_photo = tmp_path / "eileen-enrol.jpg"
    smaller = astronaut.resize((astronaut.width * 8 // 10, astronaut.height * 8 // 10))
    ImageEnhance.Brightness(smaller).enhance(1.15).save(enrol_photo, quality=90)
    gallery = Path(server.log).parent / "gallery"
    out = subprocess.run(  # kept while nobody is her, by the command line in another process
        [
            sys.executable,
            "-m",
            "faceid",
            "identify",
            *map(str, kept_photos),
            "--remember",
            "--json",
            "-g",
            str(gallery),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    kept = [json.loads(line)["faces"][0]["kept_as"] for line in out.stdout.splitlines()]
    assert all(isinstance(k, int) for k in kept), out.stdout

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(server.url + "/#people")
    page.wait_for_selector("#people-list .person")
    page.fill("#enrol-name", "Eileen Collins")
    page.set_input_files("#enrol-files", str(enrol_photo))
    page.click("#enrol button[type=submit]")
    page.wait_for_selector('.person[data-name="Eileen Collins"] .thumb img[src^="blob:"]', timeout=120_000)

    page.click("#tab-review")
    offers = '.suggestion[data-person="Eileen Collins"]'
    page.wait_for_selector(f'{offers} .thumb img[src^="blob:"]', timeout=60_000)
    assert sorted(int(f) for f in page.locator(offers).evaluate_all("(cards) => cards.map((c) => c.dataset.face)")) == (
        sorted(kept)
    )
    assert page.locator(offers).first.locator(".suggest-question").inner_text() == "Is this Eileen Collins?"
    shot(page, "12-review-is-this-x")

    accepted, rejected = kept
    page.locator(f'{offers}[data-face="{accepted}"] button.accept').click()
    page.wait_for_selector(f'{offers}[data-face="{accepted}"]', state="detached")
    assert f"Face {accepted} is now Eileen Collins's." in page.inner_text("#review-message")
    page.locator(f'{offers}[data-face="{rejected}"] button.reject').click()
    page.wait_for_selector(offers, state="detached")
    assert "will not be offered as them again" in page.inner_text("#review-message")
    shot(page, "13-review-answered")

    # the gallery agrees, through the API: one face more for her, the other unknown and not offered
    with urllib.request.urlopen(server.url + "/v1/people/Eileen%20Collins") as r:
        assert accepted in [f["id"] for f in json.load(r)["faces"]]
    with urllib.request.urlopen(server.url + "/v1/suggestions") as r:
        assert [o for o in json.load(r) if o["person"] == "Eileen Collins"] == []
    with urllib.request.urlopen(server.url + "/v1/clusters") as r:
        listed = json.load(r)
    still_kept = {f["id"]: g["cluster"] for g in listed for f in g["faces"]}
    assert rejected in still_kept and accepted not in still_kept
    # a face in no group is on the page too: in the "In no group" card, with the API's count
    loose = [g for g in listed if g["cluster"] is None]
    page.reload()
    page.wait_for_selector("#review-list")
    if loose:
        page.wait_for_selector(f'.loose .thumb[data-face="{loose[0]["faces"][0]["id"]}"] img[src^="blob:"]')
        assert page.locator(".loose .thumb").count() == loose[0]["size"]
    assert still_kept[rejected] is not None or page.locator(f'.loose .thumb[data-face="{rejected}"]').count() == 1
    page.wait_for_timeout(500)
    assert page.locator(offers).count() == 0  # remembered across a reload
    assert problems == []
    page.close()


#: The policy the server sends (faceid.server.headers): no inline script or style may run.
STRICT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def strict_page(browser, server, width: int, height: int):
    """A page at ``width`` x ``height`` (a phone's touch screen below 800 px) under :data:`STRICT_CSP`;
    page errors and policy violations go to the list returned with it."""
    phone = width < 800
    page = browser.new_page(viewport={"width": width, "height": height}, is_mobile=phone, has_touch=phone)
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)

    def with_csp(route):
        response = route.fetch()
        route.fulfill(response=response, headers={**response.headers, "content-security-policy": STRICT_CSP})

    page.route(server.url + "/", with_csp)
    return page, problems


def no_sideways_scroll(page, width: int) -> None:
    scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll <= inner and scroll <= width, f"scrolls sideways: {scroll} px of content in {inner} px"


@pytest.mark.parametrize("width, height", [(360, 740), (390, 844), (1280, 900)])
def test_the_page_on_a_phone_numbers_faces_enlarges_one_and_never_scrolls_sideways(server, browser, width, height):
    page, problems = strict_page(browser, server, width, height)
    page.goto(server.url + "/")
    page.wait_for_selector("#identify")
    assert page.evaluate("fetch(document.querySelector('link[rel=icon]').href).then((r) => r.status)") == 200
    no_sideways_scroll(page, width)

    page.set_input_files("#identify-file", str(SAMPLES / "photos" / "obama_and_biden.jpg"))
    page.wait_for_selector("#identify-boxes .box >> nth=1", timeout=120_000)
    wait_until(page, "document.getElementById('identify-image').naturalWidth > 0")
    # the list and the boxes carry the same numbers, in the same order, with the same status
    listed = page.eval_on_selector_all("#identify-faces li.face", "l => l.map((e) => [e.dataset.face, e.className])")
    boxed = page.eval_on_selector_all("#identify-boxes .box", "b => b.map((e) => [e.dataset.face, e.className])")
    assert [n for n, _ in listed] == [n for n, _ in boxed] == ["1", "2"]
    assert [c.split()[-1] for _, c in listed] == [c.split()[-1] for _, c in boxed] == ["known", "known"]
    # numbers on the photo are sized for the screen, not scaled down with the photo
    assert float(page.eval_on_selector(".box .number", "e => parseFloat(getComputedStyle(e).fontSize)")) >= 14
    no_sideways_scroll(page, width)
    shot(page, f"12-identify-{width}")

    # tap a face on the photo: it is shown enlarged, with its number and name
    page.locator("#identify-boxes .box").nth(1).click()
    page.wait_for_selector("dialog#face-zoom[open]")
    assert page.inner_text("#face-zoom-text").startswith("2. ")
    inked = "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; return new Set(d).size }"
    assert page.eval_on_selector("#face-zoom-canvas", inked) > 50, "the enlarged face is drawn"
    shot(page, f"13-face-enlarged-{width}")
    page.click("#face-zoom-close")
    page.locator("#identify-faces li.face").nth(0).locator("button").click()  # or tap it in the list
    page.wait_for_selector("dialog#face-zoom[open]")
    assert page.inner_text("#face-zoom-text").startswith("1. ")
    page.click("#face-zoom-close")

    for view in ("people", "review"):
        page.click(f"#tab-{view}")
        page.wait_for_selector(f"#{view}:not([hidden])")
        # drawn: the people enrolled above, and the review list (empty or not)
        if view == "people":
            page.wait_for_selector(".person .thumb img[src^='blob:']")
        else:  # the earlier tests may leave groups, faces in no group or nothing
            wait_until(
                page, "!document.getElementById('review-empty').hidden || !!document.querySelector('#review-list > *')"
            )
        page.wait_for_load_state("networkidle")
        no_sideways_scroll(page, width)
        shot(page, f"14-{view}-{width}")
    assert problems == []
    page.close()


def test_the_page_waits_while_the_server_loads_its_models(server, browser):
    page, problems = strict_page(browser, server, 390, 844)
    answers = ['{"status": "loading"}']  # the first /healthz, as a server still loading says it

    def healthz(route):
        if answers:
            route.fulfill(status=503, body=answers.pop(), content_type="application/json")
        else:
            route.continue_()

    page.route(server.url + "/healthz", healthz)
    page.goto(server.url + "/")
    wait_until(page, "document.getElementById('identify-message').textContent.includes('loading')")
    page.wait_for_selector("#identify-message", state="hidden", timeout=30_000)  # asked again: ready
    assert not answers and problems == []
    page.close()


def test_a_read_only_key_is_not_offered_changes_and_the_key_can_be_changed_or_forgotten(server, browser):
    gallery = Path(server.log).parent / "gallery"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def key(name: str, *flags: str) -> str:
        args = [sys.executable, "-m", "faceid", "keys", "create", name, *flags, "--gallery", str(gallery)]
        return subprocess.run(args, capture_output=True, text=True, env=env, check=True).stdout.strip().splitlines()[-1]

    viewer, owner = key("viewer", "--read-only"), key("owner")
    try:
        page, problems = strict_page(browser, server, 390, 844)
        page.goto(server.url + "/#people")
        page.wait_for_selector("#key-form:not([hidden])")
        page.fill("#key-input", viewer)
        page.click("#key button[type=submit]")
        page.wait_for_selector('.person[data-name="joe_biden"] .thumb img[src^="blob:"]')
        assert page.inner_text("#key-button") == "Key: viewer (read-only)"
        assert page.is_hidden("#people-message"), "no stale message from before the key was given"
        assert not page.is_visible("#enrol")
        assert page.locator(".person button.rename:visible, .person button.remove:visible").count() == 0
        assert page.locator(".remove-face:visible").count() == 0
        no_sideways_scroll(page, 390)
        shot(page, "15-read-only-key")

        # change the key without a new tab: forget it, then enter another
        page.click("#key-button")
        page.click("#key-forget")
        assert "forgotten" in page.inner_text("#key-message")
        assert page.evaluate("sessionStorage.getItem('faceid-key')") is None
        page.fill("#key-input", owner)
        page.click("#key button[type=submit]")
        page.wait_for_selector("#key-form", state="hidden")
        assert page.inner_text("#key-button") == "Key: owner"
        page.wait_for_selector("#enrol", state="visible")
        assert page.locator(".person button.rename:visible").count() >= 2
        shot(page, "16-admin-key")
        assert problems == []
        page.close()
    finally:
        for name in ("viewer", "owner"):
            args = [sys.executable, "-m", "faceid", "keys", "revoke", name, "--gallery", str(gallery)]
            subprocess.run(args, env=env, check=True, capture_output=True)


def test_sigterm_finishes_requests_in_flight_and_exits_0(server):
    photo = (SAMPLES / "photos" / "obama_and_biden.jpg").read_bytes()
    boundary = "faceidboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="o.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + photo
        + f"\r\n--{boundary}--\r\n".encode()
    )
    answers: list[int] = []

    def ask():
        request = urllib.request.Request(
            server.url + "/v1/identify",
            data=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        with urllib.request.urlopen(request, timeout=60) as r:
            answers.append(r.status)
            assert len(json.load(r)["faces"]) == 2

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.2)  # the requests are in flight
    assert server.stop() == 0
    for t in threads:
        t.join()
    assert answers == [200] * 8, server.log.read_text()[-2000:]
