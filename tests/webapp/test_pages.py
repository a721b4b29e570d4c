"""What a person sees on every page state (issue 21), in headless Chromium with the real app.

Like test_e2e.py: Debian's Chromium driven by Playwright, the app over HTTP, a real Celery worker
and Redis. Each test names the state it covers and fails on the pages as they were before.
"""

from __future__ import annotations

import pytest
import webapp_media

pytestmark = [pytest.mark.slow, pytest.mark.integration]

CHROMIUM, FLAGS = webapp_media.CHROMIUM, webapp_media.CHROMIUM_FLAGS


@pytest.fixture(scope="module")
def browser(playwright):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
    yield browser
    browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    yield page
    context.close()


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
