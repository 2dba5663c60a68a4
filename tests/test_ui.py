"""The Gradio page end to end in a real headless Chromium, against the real server."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from ports import free_port

from i2v.params import InvalidParameterError

gr = pytest.importorskip("gradio", reason="the UI needs gradio: pip install 'i2v-serving[ui]'")
playwright = pytest.importorskip("playwright.sync_api", reason="the browser tests need playwright")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium (Debian: apt-get install chromium)")

from i2v.ui.app import CUSTOM, MODEL_DEFAULT, build_app, build_request  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "lighthouse.png"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def fields(**overrides):
    values = dict(
        image_path=str(EXAMPLE),
        resolution=MODEL_DEFAULT,
        randomize_seed=True,
        prompt="waves",
        negative_prompt="",
        height=512,
        width=512,
        num_frames=16,
        fps=16,
        num_inference_steps=50,
        guidance_scale=9.0,
        seed=0,
        decode_chunk_size=1,
    )
    return {**values, **overrides}


def test_page_fields_become_a_request_with_model_defaults_left_out():
    request = build_request(**fields())
    assert (request.height, request.width, request.seed, request.negative_prompt) == (None, None, None, None)
    assert (request.num_frames, request.num_inference_steps, request.guidance_scale) == (16, 50, 9.0)
    custom = build_request(**fields(resolution=CUSTOM, height=64, width=96, randomize_seed=False, seed=7))
    assert (custom.height, custom.width, custom.seed) == (64, 96, 7)
    wide = build_request(**fields(resolution="512p-wide"))
    assert (wide.height, wide.width) == (512, 896)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"image_path": None}, "add a picture first"),
        ({"prompt": "  "}, "write a prompt"),
        ({"image_path": __file__}, "the picture could not be read: upload a PNG, JPEG or WebP image"),
        ({"resolution": CUSTOM, "height": 100, "size_step": 16}, "height must be a multiple of 16, got 100"),
        ({"num_inference_steps": 5}, "num_inference_steps must be between 10 and 100, got 5"),
    ],
)
def test_bad_fields_are_explained_in_plain_words(overrides, message):
    with pytest.raises(InvalidParameterError, match=message):
        build_request(**fields(**overrides))


@pytest.fixture(scope="module")
def page_url(triton):
    port = free_port()
    app = build_app(triton.endpoints.grpc_url, lora_refresh_s=1)  # the LoRA list read every second
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}"
    app.close()


@pytest.fixture
def page(page_url):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        # not "networkidle": the page holds a session heartbeat open (its per-visitor state)
        page.goto(page_url, wait_until="load")
        page.locator("#generate").wait_for(timeout=30_000)
        yield page
        browser.close()


def fill_small_settings(page, steps: int) -> None:
    page.get_by_text("Advanced").click()
    page.locator("#resolution input").click()
    page.get_by_role("option", name=CUSTOM, exact=True).click()
    page.locator("#height input").fill("64")
    page.locator("#width input").fill("96")
    for name, value in (("num_inference_steps", steps), ("num_frames", 8)):
        page.locator(f"#{name} input[type=number]").fill(str(value))
        page.locator(f"#{name} input[type=number]").press("Enter")


def test_videos_older_than_a_day_are_deleted_when_a_new_one_is_written(tmp_path, monkeypatch):
    """A page left running for weeks must not fill the disk: the app's own copies expire (Gradio's cache too:
    `delete_cache`)."""
    import os

    from i2v.client.types import GenerationResult
    from i2v.ui.app import VIDEO_KEPT_S, _save_video

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    old, recent = _save_video(GenerationResult(b"old", {"seed": 1})), _save_video(GenerationResult(b"new", {"seed": 2}))
    long_ago = time.time() - VIDEO_KEPT_S - 60
    os.utime(old, (long_ago, long_ago))
    newest = _save_video(GenerationResult(b"newest", {"seed": 3}))
    assert not Path(old).exists() and Path(recent).read_bytes() == b"new" and Path(newest).read_bytes() == b"newest"


@needs_chromium
def test_upload_generate_and_a_playable_video_appears_with_progress(page, tmp_path):
    page.locator("#image input[type=file]").set_input_files(str(EXAMPLE))
    page.locator("#prompt textarea").fill("waves rolling in")
    fill_small_settings(page, steps=20)
    page.locator("#generate").click()

    steps_seen: set[int] = set()
    video = page.locator("#video video")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        steps_seen.update(int(step) for step in re.findall(r"\b(\d+)/20\b", page.locator("body").inner_text()))
        if video.count() and video.evaluate("v => v.readyState >= 1 && v.duration > 0"):
            break
        time.sleep(0.1)
    assert video.count() == 1 and video.evaluate("v => v.readyState >= 1 && v.duration > 0"), "no playable video"
    assert len(steps_seen) >= 2, f"the progress bar did not move: {steps_seen}"
    assert re.search(r'"seed"\s*:\s*\d+', page.locator("#metadata").inner_text())
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui.png"), full_page=True)


@needs_chromium
def test_a_mistake_is_shown_in_the_page_and_the_page_still_works(page):
    page.locator("#image input[type=file]").set_input_files(str(EXAMPLE))
    page.locator("#generate").click()  # no prompt
    page.get_by_text("write a prompt").first.wait_for(timeout=20_000)

    page.locator("#prompt textarea").fill("clouds drifting")
    fill_small_settings(page, steps=10)
    page.locator("#generate").click()
    page.wait_for_function(
        "() => { const v = document.querySelector('#video video'); return v && v.duration > 0; }", timeout=90_000
    )


@needs_chromium
def test_closing_the_tab_cancels_its_request_on_the_server(page, triton):
    """Nobody will see the video: the server stops at its next step instead of running to the end."""
    stops_before = triton.log_tail(4000).count("cancelled before step")
    page.locator("#image input[type=file]").set_input_files(str(EXAMPLE))
    page.locator("#prompt textarea").fill("waves")
    fill_small_settings(page, steps=100)
    page.locator("#generate").click()
    page.wait_for_function("() => /\\b[1-9]\\d*\\/100\\b/.test(document.body.innerText)", timeout=60_000)  # running
    page.close()
    deadline = time.monotonic() + 60
    while triton.log_tail(4000).count("cancelled before step") == stops_before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert triton.log_tail(4000).count("cancelled before step") > stops_before, "the request ran on"


@needs_chromium
def test_a_file_that_is_no_picture_is_refused_in_plain_words(page, tmp_path):
    """Gradio's own error would name the upload's temporary path; the page says what to upload instead."""
    broken = tmp_path / "holiday.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))  # a PNG signature, then nothing an image decoder reads
    page.locator("#image input[type=file]").set_input_files(str(broken))
    page.get_by_text("the picture could not be read: upload a PNG, JPEG or WebP image").first.wait_for(timeout=20_000)
    assert str(tmp_path) not in page.locator("body").inner_text() and "/tmp/" not in page.locator("body").inner_text()


@needs_chromium
def test_numbers_out_of_range_or_off_the_size_step_are_refused_not_changed(page):
    """The browser does not clamp a typed number: the request preview names the range, or the served model's
    size step (16 for the tiny model, read from the server), and the field keeps what was typed."""
    page.locator("#image input[type=file]").set_input_files(str(EXAMPLE))
    page.locator("#prompt textarea").fill("waves")
    page.get_by_text("Advanced").click()
    page.locator("#resolution input").click()
    page.get_by_role("option", name=CUSTOM, exact=True).click()
    request = page.locator("#request")
    for typed, refusal in (
        ("5000", "height must be between 64 and 1280, got 5000"),
        ("100", "height must be a multiple of 16"),
    ):
        page.locator("#height input").fill(typed)
        page.locator("#height input").press("Enter")
        deadline = time.monotonic() + 20
        while refusal not in request.inner_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert refusal in request.inner_text(), request.inner_text()
        assert page.locator("#height input").input_value() == typed
    assert "a multiple of 16" in page.locator("#height").inner_text()  # the field's help names the step


@needs_chromium
def test_the_page_starts_at_the_served_models_defaults_and_shows_what_it_will_send(page):
    """The tiny model is served with 64x96 and 25 steps: the page shows those, not the table's 704x1280 and 50."""
    page.get_by_text("Advanced").click()
    page.wait_for_function(
        "() => document.querySelector('#num_inference_steps input[type=number]').value === '25'", timeout=20_000
    )
    assert (page.locator("#height input").input_value(), page.locator("#width input").input_value()) == ("64", "96")
    assert page.locator("#resolution input").input_value() == "model default (64x96)"

    page.locator("#image input[type=file]").set_input_files(str(EXAMPLE))
    page.locator("#prompt textarea").fill("waves")
    request = page.locator("#request")
    deadline = time.monotonic() + 20
    while "waves" not in request.inner_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    sent = request.inner_text()
    assert re.search(r"num_inference_steps\W+25", sent) and "waves" in sent, sent
    assert "height" not in sent and "seed" not in sent  # left to the model: its default size, a random seed
    assert not page.locator("#lora-row").is_visible()  # the server has no LoRA adapters: no LoRA row


@needs_chromium
def test_a_lora_the_server_lists_can_be_picked_and_scaled(page, model_repository, tiny_pipeline, tmp_path):
    """An adapter registered on the server while the page is open appears in the LoRA dropdown without a
    reload; the one picked, at the scale set, goes into the request and the server uses it; once removed, the
    row goes away again."""
    from lora_files import MadeLora

    from i2v.model import lora_registry

    assert not page.locator("#lora-row").is_visible()
    MadeLora(tiny_pipeline.unet, tmp_path / "style.safetensors", seed=4)
    lora_registry.add(model_repository, "watercolor", tmp_path / "style.safetensors")
    try:
        page.locator("#lora-row").wait_for(state="visible", timeout=30_000)
        page.locator("#image input[type=file]").set_input_files(str(EXAMPLE))
        page.locator("#prompt textarea").fill("waves")
        page.locator("#lora input").click()
        page.get_by_role("option", name="watercolor (rank 4)").click()
        page.locator("#lora_scale input[type=number]").fill("0.5")
        page.locator("#lora_scale input[type=number]").press("Enter")
        fill_small_settings(page, steps=10)
        request = page.locator("#request")
        page.wait_for_function(
            "() => document.querySelector('#request').innerText.includes('watercolor')", timeout=20_000
        )
        assert re.search(r"lora_scale\W+0.5", request.inner_text()), request.inner_text()
        page.locator("#generate").click()
        page.wait_for_function(
            "() => { const v = document.querySelector('#video video'); return v && v.duration > 0; }", timeout=90_000
        )
        used = page.locator("#metadata").inner_text()
        assert re.search(r'"lora"\s*:\s*"watercolor"', used) and re.search(r'"lora_scale"\s*:\s*0.5', used), used
    finally:
        lora_registry.remove(model_repository, "watercolor")
    page.locator("#lora-row").wait_for(state="hidden", timeout=30_000)  # no adapters left: no row
    page.wait_for_function(  # the removed adapter is no longer what Generate would send
        "() => !document.querySelector('#request').innerText.includes('watercolor')", timeout=20_000
    )
