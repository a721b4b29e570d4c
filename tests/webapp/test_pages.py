"""What a person sees on every page state (issue 21), in headless Chromium with the real app.

Like test_e2e.py: Debian's Chromium driven by Playwright, the app over HTTP, a real Celery worker
and Redis. Each test names the state it covers and fails on the pages as they were before.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import testmedia
from jobstore import Job, JobStore, new_id

pytestmark = [pytest.mark.slow, pytest.mark.integration]

CHROMIUM, FLAGS = testmedia.CHROMIUM, testmedia.CHROMIUM_FLAGS


def _upload(page, live_server, path) -> None:
    """Send a file through the home page and wait on its job page until the job ends."""
    page.goto(f"{live_server}/")
    page.set_input_files("#file", str(path))
    page.click("#upload-submit")
    page.wait_for_url("**/jobs/**")
    page.wait_for_selector("#job[data-state='done'], #job[data-state='failed']", timeout=120000)


def test_a_photo_without_a_face_is_a_neutral_result(page, live_server, webmedia):
    _upload(page, live_server, webmedia.blank)
    assert page.get_attribute("#job", "data-state") == "done"
    assert page.locator("#failure").is_hidden()
    assert page.text_content("#verdict") == "No face found"
    assert "verdict none" in page.get_attribute("#verdict", "class")
    assert "Checked the whole photo (320×240 px)" in page.text_content("#summary")


def _fake_camera_browser(playwright, y4m=None):
    """Chromium with its fake camera: its own green test pattern (no face), or a .y4m file."""
    args = [*FLAGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
    if y4m is not None:
        args.append(f"--use-file-for-fake-video-capture={y4m}")
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)


def _frames_checked(page, at_least: int) -> None:
    page.wait_for_function(
        r"(n) => Number((document.querySelector('#webcam-status').textContent.match(/^\d+/) || [0])[0]) >= n",
        arg=at_least,
        timeout=60000,
    )


@pytest.mark.parametrize("mode", ["device", "server"])
def test_webcam_on_a_test_pattern_says_no_face(playwright, live_server, mode):
    """Chromium's own fake camera shows a green test pattern, no face. BlazeFace reports a
    "face" on it at 0.53-0.62 every other frame; the live rule (the same in the browser and the
    server's frame task) keeps none, so no box is drawn and the page says no face is seen."""
    browser = _fake_camera_browser(playwright)
    try:
        page = browser.new_context(permissions=["camera"]).new_page()
        page.goto(f"{live_server}/webcam/" + ("?mode=server" if mode == "server" else ""))
        page.evaluate(
            """() => new MutationObserver(() => {
                const o = document.querySelector('#webcam-overlay');
                window.maxBoxes = Math.max(window.maxBoxes || 0, Number(o.dataset.boxes || 0));
                const v = document.querySelector('#webcam-verdict').textContent;
                window.verdicts = (window.verdicts || new Set()).add(v);
            }).observe(document.querySelector('#webcam'), {subtree: true, attributes: true, childList: true, characterData: true})"""
        )
        page.click("#webcam-start")
        _frames_checked(page, 16)
        assert page.get_attribute("#webcam-mode", "data-mode") == mode
        assert page.evaluate("window.maxBoxes") == 0, page.get_attribute("#webcam-overlay", "data-labels")
        verdicts = page.evaluate("Array.from(window.verdicts)")
        assert not [v for v in verdicts if v.startswith(("Likely", "Uncertain"))], verdicts
        assert page.text_content("#webcam-verdict") == "No face in view."
    finally:
        browser.close()


def test_webcam_headline_and_box_show_the_same_number(playwright, live_server, tmp_path):
    """A real face: the box's label and the headline are the same running mean and verdict."""
    browser = _fake_camera_browser(playwright, testmedia.webcam_y4m(tmp_path / "camera.y4m"))
    try:
        page = browser.new_context(permissions=["camera"]).new_page()
        page.goto(f"{live_server}/webcam/")
        page.click("#webcam-start")
        decided = "() => /^(Likely|Uncertain)/.test(document.querySelector('#webcam-verdict').textContent)"
        page.wait_for_function(decided, timeout=60000)
        label, headline, kind = page.evaluate(
            """() => [document.querySelector('#webcam-overlay').dataset.labels,
                      document.querySelector('#webcam-verdict').textContent,
                      document.querySelector('#webcam-verdict').className]"""
        )
        word, percent = label.split("|")[0].split()
        assert kind == f"verdict {word.lower()}", (label, headline, kind)
        assert f"· {percent} fake over the last" in headline, (label, headline)
    finally:
        browser.close()


def _portrait_clip(path, seconds: float = 2.0):
    """A 720x1280 (portrait) H.264 clip: the shared face clip placed on a tall canvas."""
    rate, (width, height), frames = testmedia.opening(testmedia.VIDEO, seconds)

    def tall(frame):
        rgb = frame.to_ndarray(format="rgb24", width=720, height=720 * height // width)
        canvas = np.full((1280, 720, 3), 40, dtype=np.uint8)
        top = (1280 - rgb.shape[0]) // 2
        canvas[top : top + rgb.shape[0]] = rgb
        return canvas

    return testmedia.write_video(
        path, map(tall, frames), rate, (720, 1280), fmt="mp4", stream_options=testmedia.FAST
    )


def test_video_result_explains_its_scores_lists_real_stages_and_fits_the_screen(page, live_server, tmp_path):
    page.set_viewport_size({"width": 1280, "height": 720})
    clip = _portrait_clip(tmp_path / "portrait.mp4")
    page.goto(f"{live_server}/")
    page.set_input_files("#file", str(clip))
    page.click("#upload-submit")
    page.wait_for_url("**/jobs/**")
    # the stages listed are the ones the worker reports for a video (no separate "scoring")
    stages = page.eval_on_selector_all("#stages li", "items => items.map(li => li.dataset.stage)")
    assert stages == ["frames", "faces", "encoding"], stages
    page.wait_for_selector("#job[data-state='done'], #job[data-state='failed']", timeout=120000)
    assert page.get_attribute("#job", "data-state") == "done", page.text_content("#failure")
    page.wait_for_function(
        "() => { const v = document.querySelector('#annotated-video'); return v && v.readyState >= 1; }",
        timeout=20000,
    )
    assert "per person" in page.text_content("#video-note") and page.locator("#video-note").is_visible()
    box = page.locator("#annotated-video").bounding_box()
    assert box["height"] <= 0.8 * 720, box  # the player (and its controls) fits the window
    assert box["width"] < box["height"]  # still portrait, not stretched


def test_a_long_file_name_does_not_widen_the_page_on_a_phone(page, live_server, webmedia, tmp_path):
    page.set_viewport_size({"width": 390, "height": 844})
    named = tmp_path / ("holiday_photo_from_the_family_group_chat_" + "x" * 60 + ".jpg")
    named.write_bytes(webmedia.blank.read_bytes())
    page.goto(f"{live_server}/")
    page.set_input_files("#file", str(named))
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # the chosen name, too
    page.click("#upload-submit")
    page.wait_for_url("**/jobs/**")
    page.wait_for_selector("#job[data-state='done'], #job[data-state='failed']", timeout=120000)
    assert named.name in page.text_content("h1")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_a_corrupt_video_fails_in_plain_words_without_a_json_download(page, live_server, webmedia, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(webmedia.clip.read_bytes()[:32] + bytes(4000))  # an MP4 header, then zeros
    _upload(page, live_server, broken)
    assert page.get_attribute("#job", "data-state") == "failed"
    failure = page.text_content("#failure")
    assert "corrupt or truncated" in failure, failure
    assert "Invalid data" not in failure, failure  # FFmpeg's words stay in the worker's log
    assert page.locator("#json-link").is_hidden()  # nothing to download from a failed job


def test_small_files_are_sized_in_kilobytes(page, live_server, webmedia):
    page.goto(f"{live_server}/")
    page.set_input_files("#file", str(webmedia.blank))
    shown = page.text_content("#file-name")
    size = webmedia.blank.stat().st_size
    assert f"({round(size / 1024)} KB)" in shown and "0.0 MB" not in shown, shown


def test_the_camera_line_does_not_repeat_the_make(page, live_server, tmp_path):
    photo = tmp_path / "canon.jpg"
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "Canon EOS 5D"  # Make, Model as Canon writes them
    Image.new("RGB", (320, 240), (120, 130, 140)).save(photo, exif=exif)
    _upload(page, live_server, photo)
    facts = page.text_content("#provenance-facts")
    assert "Canon EOS 5D" in facts and "Canon Canon" not in facts, facts


def test_webcam_words_in_server_mode(playwright, live_server, tmp_path):
    """The fallback says why in words (no file address), and counts '1 frame', not '1 frames'."""
    browser = _fake_camera_browser(playwright, testmedia.webcam_y4m(tmp_path / "camera.y4m"))
    try:
        page = browser.new_context(permissions=["camera"]).new_page()
        page.route("**/static/vendor/ort/**", lambda route: route.abort())
        page.goto(f"{live_server}/webcam/")
        page.evaluate(
            """() => new MutationObserver(() => {
                window.statuses = (window.statuses || new Set()).add(
                    document.querySelector('#webcam-status').textContent.split(' · ')[0]);
            }).observe(document.querySelector('#webcam-status'), {childList: true, characterData: true, subtree: true})"""
        )
        page.click("#webcam-start")
        _frames_checked(page, 2)
        assert page.get_attribute("#webcam-mode", "data-mode") == "server"
        mode = page.text_content("#webcam-mode")
        assert "/static/" not in mode and "could not load" not in mode, mode
        assert "did not load" in mode, mode
        statuses = page.evaluate("Array.from(window.statuses)")
        assert "1 frame checked" in statuses and "1 frames checked" not in statuses, statuses
    finally:
        browser.close()


def test_api_clients_get_an_api_answer_and_browser_forms_keep_theirs(page, live_server):
    page.goto(f"{live_server}/")
    answers = page.evaluate(
        """async (base) => {
            const post = async (url, headers, accept) => {
                const body = new FormData();
                body.append("url", "http://127.0.0.1/x.mp4");
                const r = await fetch(base + url, {method: "POST", body, headers: {Accept: accept, ...headers}});
                return [r.status, (await r.json()).error];
            };
            return {
                nothing: await post("/api/v1/analyze", {}, "application/json"),
                bearer: await post("/api/v1/analyze", {Authorization: "Bearer abc"}, "application/json"),
                form: await post("/link", {}, "application/json"),
            };
        }""",
        live_server,
    )
    status, error = answers["nothing"]
    assert status == 401 and "Authorization: Bearer <key>" in error["message"], answers
    assert "X-CSRFToken" in error["message"] and "reload the page" not in error["message"]
    status, error = answers["bearer"]  # this server has no API keys
    assert status == 403 and "UNMASK_API_KEYS" in error["message"], answers
    status, error = answers["form"]  # the browser's own form keeps the browser's words
    assert status == 400 and "reload the page" in error["message"], answers


def test_quiz_pairs_look_alike_and_the_answer_stays_readable(page, service_app, service_env, live_server):
    """Both faces of a round: one data set, one crop, size and JPEG quality. After answering,
    the cards (disabled buttons) and their scores keep full opacity."""
    faces = testmedia.SHARED / "faces"
    runner = service_app.test_cli_runner()
    for name in ("dfdc", "stargan"):  # 224 px and 128 px crops in one pool
        assert runner.invoke(args=["quiz", "import", str(faces / name), "--limit", "3"]).exit_code == 0
    rounds = Path(service_env["UNMASK_DATA_DIR"]) / "quiz-rounds"
    for n in range(3):
        with page.expect_response("**/quiz/round") as made:
            if n == 0:
                page.goto(f"{live_server}/quiz/")
            else:
                page.click("#quiz-next")
        round_id = made.value.json()["round"]
        page.wait_for_selector("#quiz[data-ready='1']", timeout=15000)
        record = json.loads((rounds / f"{round_id}.json").read_text())
        origins = {Path(p).parent.parent.name for p in record["originals"].values()}
        assert len(origins) == 1, record  # one data set
        shown = []
        for side in "ab":
            body = page.request.get(live_server + page.get_attribute(f"#img-{side}", "src")).body()
            with Image.open(io.BytesIO(body)) as img:
                shown.append((img.size, img.quantization))
        assert shown[0] == shown[1], "the two pictures differ in size or JPEG quality"
        page.click("#pick-a")
        page.wait_for_selector(f"#quiz[data-answered='{n + 1}'], #quiz-error:not(:empty)", timeout=30000)
        opacity = page.evaluate(
            "() => ['#pick-a', '#pick-b'].map(s => getComputedStyle(document.querySelector(s)).opacity)"
        )
        assert opacity == ["1", "1"], opacity
        assert page.text_content("#score-a")


@pytest.mark.parametrize("fmt", ["AVIF", "HEIF"])
def test_avif_and_heic_photos_are_analysed(page, live_server, webmedia, tmp_path, fmt):
    photo = tmp_path / ("face.avif" if fmt == "AVIF" else "IMG_0001.HEIC")
    Image.open(webmedia.photo).save(photo, format=fmt, quality=90)
    page.goto(f"{live_server}/")
    accept = page.get_attribute("#file", "accept")
    assert ".heic" in accept and ".avif" in accept
    page.set_input_files("#file", str(photo))
    page.click("#upload-submit")
    page.wait_for_url("**/jobs/**", timeout=15000)  # the browser's check let it through
    page.wait_for_selector("#job[data-state='done'], #job[data-state='failed']", timeout=120000)
    assert page.get_attribute("#job", "data-state") == "done", page.text_content("#failure")
    assert page.locator("#faces img").count() >= 1  # the face was found and judged


def test_small_things_one_picker_a_favicon_spaced_webcam_button_and_a_heatmap_legend(
    page, live_server, webmedia
):
    missing = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    page.goto(f"{live_server}/")
    # one picker: the drop zone; the browser's own input is inside it, out of sight
    pickers = page.eval_on_selector_all(
        "input[type=file], .drop-zone",
        "els => els.filter(e => { const r = e.getBoundingClientRect(); return r.width > 2 && r.height > 2; }).length",
    )
    assert pickers == 1
    assert page.evaluate(
        "() => document.querySelector('#drop-zone').contains(document.querySelector('#file'))"
    )
    icon = page.request.get(f"{live_server}/favicon.ico")
    assert icon.status == 200 and icon.body()[:4] == b"\x00\x00\x01\x00"  # an ICO file
    page.goto(f"{live_server}/webcam/")
    button = page.locator("#webcam-start").bounding_box()
    video = page.locator(".stage-box").bounding_box()
    assert button["y"] + button["height"] + 8 <= video["y"], (button, video)  # above, with room
    _upload(page, live_server, webmedia.photo)
    assert page.get_attribute("#job", "data-state") == "done"
    assert page.locator("#heatmap-legend").is_visible()
    assert "red marks the regions that pushed the score towards fake" in page.inner_text("#heatmap-legend")
    page.wait_for_timeout(300)
    assert not [u for u in missing if "favicon" in u], missing


def test_an_uncertain_verdict_has_its_own_colour_and_words(page, service_env, live_server):
    """The third verdict (two thresholds on the card): amber, and "the model cannot tell"."""
    store = JobStore(service_env["UNMASK_DATA_DIR"])
    job = Job(id=new_id(), source="upload", filename="portrait.jpg", kind="image")
    store.create(job)
    face = {"index": 0, "box": [10, 10, 100, 100], "fake_probability": 0.47, "track_id": None}
    store.write_result(
        job.id,
        {
            "kind": "image",
            "status": "ok",
            "verdict": "uncertain",
            "fake_probability": 0.47,
            "threshold": 0.9,
            "thresholds": {"real": 0.03, "fake": 0.9},
            "faces": [{**face, "verdict": "uncertain"}],
            "evidence": [{**face, "verdict": "uncertain", "crop": None, "heatmap": None}],
            "width": 200,
            "height": 200,
            "model": "0.3.1",
            "model_decided": 0.134,
        },
    )
    page.goto(f"{live_server}/jobs/{job.id}")
    page.wait_for_selector("#job[data-state='done']")
    verdict = page.text_content("#verdict")
    assert verdict.startswith("Uncertain: the model cannot tell from this face"), verdict
    assert page.get_attribute("#verdict", "class") == "verdict uncertain"
    amber = page.evaluate("getComputedStyle(document.querySelector('#verdict')).color")
    assert amber == "rgb(183, 121, 31)", amber  # --uncertain, neither the real nor the fake colour
    assert "uncertain between" in page.text_content("#summary")
    # how often the model decides at all, from its card: an "uncertain" weighed, not hidden
    assert "decides on 13% of its test faces" in page.text_content("#summary").replace(" %", "%")
    assert "the model cannot tell from this face" in page.text_content("#faces figcaption")
    assert page.get_attribute("#faces figure", "data-verdict") == "uncertain"
