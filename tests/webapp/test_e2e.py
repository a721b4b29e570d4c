"""End to end in headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

Never ``playwright install``: the browser comes from apt. The webcam test feeds Chromium a
generated .y4m of a real face through its fake capture device.
"""

from __future__ import annotations

import pytest

import testmedia

pytestmark = [pytest.mark.slow, pytest.mark.integration]

CHROMIUM, FLAGS = testmedia.CHROMIUM, testmedia.CHROMIUM_FLAGS


def test_upload_video_shows_progress_then_a_playable_result(page, live_server, tmp_path):
    clip = testmedia.face_clip(tmp_path / "interview.mp4", seconds=6.0, width=480)
    page.goto(f"{live_server}/")
    page.set_input_files("#file", str(clip))
    page.click("#upload-submit")
    page.wait_for_url("**/jobs/**")
    page.wait_for_selector("#progress", state="visible")
    stages = set()
    for _ in range(600):
        state = page.get_attribute("#job", "data-state")
        stages.add(page.text_content("#stage"))
        if state in ("done", "failed"):
            break
        page.wait_for_timeout(100)
    assert page.get_attribute("#job", "data-state") == "done", page.text_content("#failure")
    assert stages - {"Waiting for a worker…"}, stages  # a working stage was shown
    video = page.wait_for_selector("#annotated-video")
    page.wait_for_function(
        "() => { const v = document.querySelector('#annotated-video'); return v.readyState >= 2 && v.duration > 0; }",
        timeout=20000,
    )
    assert video.evaluate("v => v.videoWidth") > 0
    assert page.get_attribute("#verdict", "data-verdict") in ("real", "fake", "uncertain")
    assert page.locator("#faces img").count() >= 2  # the crop and its heatmap
    assert page.locator("#timeline-box").is_visible()
    # the score over time, with both thresholds as lines: fake from the upper, real below the lower
    page.wait_for_function("() => window.Chart && Chart.getChart(document.querySelector('#timeline'))")
    lines = page.evaluate(
        "() => Chart.getChart(document.querySelector('#timeline')).data.datasets"
        ".map((d) => [d.label, d.data[0].y])"
    )
    assert [label for label, _ in lines] == ["fake probability", "fake from here", "real below here"]
    assert 0 < lines[2][1] < lines[1][1] < 1
    assert not page.csp_errors


def test_drop_a_photo_and_see_the_annotated_result(page, live_server, webmedia):
    page.goto(f"{live_server}/")
    data = list(webmedia.photo.read_bytes())
    page.evaluate(
        """(bytes) => {
            const file = new File([new Uint8Array(bytes)], "friend.jpg", {type: "image/jpeg"});
            const dt = new DataTransfer();
            dt.items.add(file);
            const zone = document.querySelector("#drop-zone");
            zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: dt, bubbles: true, cancelable: true}));
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
        }""",
        data,
    )
    assert "friend.jpg" in page.text_content("#file-name")
    page.click("#upload-submit")
    page.wait_for_url("**/jobs/**")
    page.wait_for_selector("#job[data-state='done'], #job[data-state='failed']", timeout=60000)
    assert page.get_attribute("#job", "data-state") == "done", page.text_content("#failure")
    image = page.wait_for_selector("#annotated-image")
    page.wait_for_function("() => document.querySelector('#annotated-image').naturalWidth > 0")
    assert image.evaluate("i => i.naturalWidth") == 640
    assert page.get_attribute("#verdict", "data-verdict") in ("real", "fake", "uncertain")
    assert page.locator("#provenance").is_visible()  # beside the verdict, not inside it
    assert page.locator("#result #provenance").count() == 0
    assert "What the file says about itself" in page.text_content("#provenance")
    assert "no provenance" in page.text_content("#provenance-summary")
    assert not page.csp_errors


def test_a_link_is_downloaded_and_analysed(page, live_server, file_server):
    page.goto(f"{live_server}/link")
    page.fill("#url", f"{file_server}/clip.mp4")
    page.click("#link-form button[type=submit]")
    page.wait_for_url("**/jobs/**")
    page.wait_for_selector("#job[data-state='done'], #job[data-state='failed']", timeout=90000)
    assert page.get_attribute("#job", "data-state") == "done", page.text_content("#failure")
    page.wait_for_selector("#annotated-video")


def test_rejected_file_is_explained_in_the_browser(page, live_server, tmp_path):
    fake = tmp_path / "cat.jpg"
    fake.write_text("this is text pretending to be a picture")
    page.goto(f"{live_server}/")
    page.set_input_files("#file", str(fake))
    page.click("#upload-submit")
    page.wait_for_function("() => document.querySelector('#upload-error').textContent.length > 0")
    assert "not a photo or video" in page.text_content("#upload-error")


def test_webcam_with_a_fake_camera_draws_boxes(playwright, live_server, tmp_path):
    y4m = testmedia.webcam_y4m(tmp_path / "camera.y4m")
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[
            *FLAGS,
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={y4m}",
        ],
    )
    try:
        context = browser.new_context(permissions=["camera"])
        page = context.new_page()
        page.goto(f"{live_server}/webcam/")
        page.click("#webcam-start")
        page.wait_for_function(
            "() => Number(document.querySelector('#webcam-overlay').dataset.boxes || 0) >= 1", timeout=30000
        )
        page.wait_for_function(
            "() => /^(Likely|Uncertain)/.test(document.querySelector('#webcam-verdict').textContent)",
            timeout=30000,
        )
        assert "frames" in page.text_content("#webcam-verdict")
    finally:
        browser.close()


def test_one_quiz_round(page, service_app, live_server):
    faces = testmedia.SHARED / "faces" / "dfdc"
    assert (
        service_app.test_cli_runner().invoke(args=["quiz", "import", str(faces), "--limit", "3"]).exit_code
        == 0
    )
    page.goto(f"{live_server}/quiz/")
    page.wait_for_selector("#quiz[data-ready='1']", timeout=15000)
    page.click("#pick-a")
    page.wait_for_selector("#quiz[data-answered]", timeout=30000)
    assert "Rounds 1" in page.text_content("#quiz-score")
    assert page.locator(".pick.is-real").count() == 1
    assert "model" in page.text_content("#score-a")
    assert not page.csp_errors


def test_a_post_without_csrf_token_is_refused(page, live_server):
    page.goto(f"{live_server}/")
    response = page.request.post(f"{live_server}/api/v1/analyze", form={"url": "http://127.0.0.1/x.mp4"})
    assert response.status == 401  # the API says which header to send (tests/webapp/test_pages.py)
    assert response.json()["error"]["code"] == "unauthorized"
    status = page.evaluate(
        """async (url) => (await fetch(url, {method: 'POST', body: new FormData()})).status""",
        f"{live_server}/link",
    )
    assert status == 400
