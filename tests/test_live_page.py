"""The live page of eqsdk serve (eqsdk.live_page), in a real browser: headless Chromium from the
system's packages (/usr/bin/chromium and /usr/bin/chromedriver) driven by Selenium.

The page opens on the default model's examples and shows a render equal to the library's; moving
the slider (key presses, real input events) shows the clip's other frames, each equal to the
library's replay of the clip's saved motion; an uploaded character changes the render; switching
the model renders with it; the page measures its frame latency. Screenshots go to the test's tmp
folder. Without the browser or Selenium the browser tests skip, or fail when
EQSDK_REQUIRE_BROWSER=1 (CI). The routes the page uses are also tested over plain HTTP.
"""
import base64
import io
import json
import os
import time
import tomllib
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from PIL import Image

import eqsdk
from eqsdk.live_page import EXAMPLE_FILES, EXAMPLES, EXAMPLES_DIR, MAX_CLIP_FRAMES, WEB_DIR, decode_clip
from eqsdk.server import create_app, running
from tests.test_server import call, error, image, png_bytes

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
REQUIRE = "EQSDK_REQUIRE_BROWSER"
WAIT_S = 20


@pytest.fixture(scope="module")
def url(mnist, sprites):
    with running(create_app([mnist, sprites], max_wait_ms=1)) as base:
        yield base


def gif_frames(path: Path) -> list[np.ndarray]:
    """A GIF's frames as (H, W, 3) uint8, read as eqsdk reads a clip."""
    clip, _ = eqsdk.read_clip(path)
    return list(clip)


def replay(r, char: Path, bg: Path, clip: Path) -> list[np.ndarray]:
    """The library's renders of a clip's saved motion: what each slider position must show."""
    return r.animate(char, bg, r.encode_motion_clip(gif_frames(clip)))


# The routes, over HTTP.
def test_examples_are_the_repositorys_and_each_model_has_every_kind():
    for f in EXAMPLE_FILES:
        assert (EXAMPLES_DIR / f).read_bytes() == (ROOT / "examples" / f).read_bytes(), f
    for model in eqsdk.bundle.MODELS:
        assert set(EXAMPLES[model]) == {"character", "background", "drive"}


def test_the_page_and_its_examples_are_package_data():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["eqsdk"]
    files = [PurePosixPath(f.relative_to(ROOT / "eqsdk").as_posix()) for f in WEB_DIR.rglob("*") if f.is_file()]
    assert len(files) == 3 + len(EXAMPLE_FILES)  # index.html, app.js, style.css and the examples
    for f in files:  # setuptools' * does not cross a /
        assert any(len(f.parts) == len(PurePosixPath(p).parts) and f.match(p) for p in patterns), f


def test_examples_route_lists_the_served_models_and_serves_only_listed_files(url):
    status, _, body = call(f"{url}/v1/examples")
    listed = json.loads(body)
    assert status == 200 and set(listed) == {"mnist", "sprites"}
    first = listed["sprites"]["character"][0]
    assert first == {"name": "sprites/knight.png", "url": "/examples/sprites/knight.png"}
    status, headers, data = call(url + first["url"])
    assert status == 200 and data == (ROOT / "examples/sprites/knight.png").read_bytes()
    for path in ("/examples/cases.json", "/examples/case1/expected.png", "/examples/..%2Fpyproject.toml",
                 "/web/live_page.py"):
        status, _, body = call(url + path)
        assert status == 404 and "no route" in error(status, body)[1]
    status, headers, body = call(url + "/")
    assert status == 200 and headers["content-type"].startswith("text/html") and b"/web/app.js" in body


def test_encode_clip_composes_the_librarys_replay(url, mnist):
    clip = ROOT / "examples/drive/drive.gif"
    status, _, body = call(f"{url}/v1/encode/clip", {"clip": clip.read_bytes()})
    out = json.loads(body)
    frames = gif_frames(clip)
    assert status == 200 and out["kind"] == "motion" and out["model"] == "mnist"
    assert out["frames"] == len(frames) == len(out["frame_images"]) == 12
    shown = Image.open(io.BytesIO(base64.b64decode(out["frame_images"][5].split(",", 1)[1])))
    np.testing.assert_array_equal(np.asarray(shown), frames[5])
    ids = {k: json.loads(call(f"{url}/v1/encode/{k}", {"image": (ROOT / f"examples/case1/{f}.png").read_bytes()})[2])["id"]
           for k, f in (("character", "char"), ("background", "bg"))}
    expected = replay(mnist, ROOT / "examples/case1/char.png", ROOT / "examples/case1/bg.png", clip)
    for k in (0, 5, 11):
        status, _, png = call(f"{url}/v1/compose", json_body={**ids, "motion": out["id"], "frame": k})
        assert status == 200
        np.testing.assert_allclose(image(png), expected[k], atol=1)  # batch of 1 against 12: float order
    status, _, body = call(f"{url}/v1/compose", json_body={**ids, "motion": out["id"], "frame": 12})
    assert error(status, body) == (400, "compose: frame 12; expected an integer from 0 to 11 (the motion has 12 frames)")


def test_encode_clip_resizes_frames_and_refuses_bad_clips(url):
    big = [Image.new("RGB", (96, 96), (40 * k, 0, 0)) for k in range(3)]
    buf = io.BytesIO()
    big[0].save(buf, format="GIF", save_all=True, append_images=big[1:], duration=100)
    status, _, body = call(f"{url}/v1/encode/clip", {"clip": buf.getvalue(), "model": "sprites"})
    out = json.loads(body)
    assert status == 200 and out["frames"] == 3 and out["model"] == "sprites"
    assert Image.open(io.BytesIO(base64.b64decode(out["frame_images"][0].split(",", 1)[1]))).size == (64, 64)
    still = png_bytes(np.zeros((64, 64, 3), np.uint8))  # a still image: a clip of one frame
    status, _, body = call(f"{url}/v1/encode/clip", {"clip": still})
    assert status == 200 and json.loads(body)["frames"] == 1
    status, body = call(f"{url}/v1/encode/clip", {"clip": b"GIF89a not really"})[::2]
    assert error(status, body) == (400, "clip 'clip.png' (17 bytes) is not an image Pillow can read; "
                                        "expected an animated GIF, PNG or WebP")
    status, body = call(f"{url}/v1/encode/clip", {"clip": (ROOT / "examples/drive/drive.gif").read_bytes()[:3000]})[::2]
    assert status == 400 and "clip 'clip.png' (3,000 bytes)" in error(status, body)[1]
    status, body = call(f"{url}/v1/encode/clip", {"clip": still, "model": "nope"})[::2]
    assert status == 404
    status, body = call(f"{url}/v1/encode/clip", {"image": still})[::2]
    assert error(status, body)[1].startswith("missing clip; expected multipart/form-data with the file clip")


def test_decode_clip_checks_frames_times_pixels_before_decoding():
    frames = [Image.new("RGB", (64, 64), (60 * k, 0, 0)) for k in range(4)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(eqsdk.InputError, match=r"4 frames of 64x64; expected at most 1,000 frames and "
                                               r"10,000 pixels over all frames"):
        decode_clip(buf.getvalue(), "a.gif", 64, 10_000)
    assert len(decode_clip(buf.getvalue(), "a.gif", 32, 64 * 64 * 4)) == 4
    assert MAX_CLIP_FRAMES == 1000


# The page, in Chromium.
@pytest.fixture(scope="module")
def browser():
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        from selenium import webdriver
    except ModuleNotFoundError:
        missing.append('selenium (pip install "eqsdk[browser]")')
    if missing:
        why = f"needs {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if os.environ.get(REQUIRE) == "1":
            pytest.fail(f"{REQUIRE}=1 and the browser test cannot run: {why}", pytrace=False)
        pytest.skip(why)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--disable-extensions"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(str(CHROMEDRIVER)))
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",  # the screenshots' size
                           {"width": 860, "height": 560, "deviceScaleFactor": 1, "mobile": False})
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, script: str, what: str):
    """Polls a JS expression until it is truthy; returns its value."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = driver.execute_script(f"return {script}")
        if value:
            return value
        time.sleep(0.02)
    state = driver.execute_script("return [document.body.dataset.state, document.getElementById('status').textContent]")
    raise AssertionError(f"waited {WAIT_S} s for {what}; the page says {state}")


def rendered(driver, frame: int, model: str, inputs: str = "") -> np.ndarray:
    """The render the page shows once it is frame `frame` of `model` (and of `inputs`, the names
    of the character, background and clip picked: "a | b | c"), as (S, S, 3) uint8."""
    shown = {"frame": str(frame), "model": model, **({"inputs": inputs} if inputs else {})}
    wait_for(driver, " && ".join(f"document.getElementById('render').dataset.{k} === {json.dumps(v)}"
                                 for k, v in shown.items()), f"the render of {shown}")
    data = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch(document.getElementById('render').src).then((r) => r.arrayBuffer()).then((b) => {
          let s = ''; for (const x of new Uint8Array(b)) s += String.fromCharCode(x); done(btoa(s)); });""")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))


@pytest.mark.slow
def test_live_page_follows_the_slider_switches_models_and_measures_latency(browser, url, mnist, sprites,
                                                                           tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    ex = ROOT / "examples"
    browser.get(url + "/")
    first = rendered(browser, 0, "mnist", "case1/char.png | case1/bg.png | drive/drive.gif")
    expected = replay(mnist, ex / "case1/char.png", ex / "case1/bg.png", ex / "drive/drive.gif")
    np.testing.assert_allclose(first, expected[0], atol=1)
    browser.save_screenshot(str(tmp_path / "1-mnist-frame0.png"))

    slider = browser.find_element(By.ID, "slider")
    assert slider.get_attribute("max") == "11" and slider.is_enabled()
    slider.send_keys(Keys.END)  # a real input event, as a drag makes
    last = rendered(browser, 11, "mnist")
    assert np.abs(last.astype(int) - first).mean() > 1  # the character moved
    np.testing.assert_allclose(last, expected[11], atol=1)
    assert browser.find_element(By.ID, "frame-label").text == "12 / 12"
    for k in (10, 9, 8, 7):  # one step at a time, each composed and shown
        slider.send_keys(Keys.ARROW_LEFT)
        np.testing.assert_allclose(rendered(browser, k, "mnist"), expected[k], atol=1)
    browser.save_screenshot(str(tmp_path / "2-mnist-frame7.png"))

    # An uploaded character: only its id changes; the slider's frame stays.
    browser.find_element(By.CSS_SELECTOR, "#pick-character input[type=file]").send_keys(str(ex / "case3/char.png"))
    uploaded = rendered(browser, 7, "mnist", "char.png | case1/bg.png | drive/drive.gif")
    np.testing.assert_allclose(uploaded, replay(mnist, ex / "case3/char.png", ex / "case1/bg.png",
                                                ex / "drive/drive.gif")[7], atol=1)

    latency = browser.find_element(By.ID, "latency")
    count = int(latency.get_attribute("data-count"))
    median, request = (float(latency.get_attribute(f"data-median{k}-ms")) for k in ("", "-request"))
    assert count == 7 and 0 < request < median < 5000  # frames 0, 11, 10, 9, 8, 7, and 7 uploaded
    last_ms = latency.get_attribute("data-last-ms")
    assert latency.text.startswith(f"frame latency {last_ms} ms, median {median:.1f} ms")
    print(f"\nlive page: median frame latency {median:.1f} ms (compose request {request:.1f} ms) over "
          f"{count} frames; screenshots in {tmp_path}")

    Select(browser.find_element(By.ID, "model")).select_by_value("sprites")
    knight, walk = ex / "sprites/knight.png", ex / "sprites/walk_sequence.gif"
    expected = replay(sprites, knight, knight, walk)
    # The sprites clip has 9 frames: the slider's position 7 is kept.
    shown = rendered(browser, 7, "sprites", "sprites/knight.png | sprites/knight.png | sprites/walk_sequence.gif")
    np.testing.assert_allclose(shown, expected[7], atol=1)
    slider.send_keys(Keys.HOME)
    rendered(browser, 0, "sprites")
    slider.send_keys(Keys.ARROW_RIGHT)
    rendered(browser, 1, "sprites")
    browser.save_screenshot(str(tmp_path / "3-sprites-frame1.png"))
    assert latency.get_attribute("data-count") == "3"  # the figures are the model's: 7, 0, 1

    # A drag by the mouse to the slider's right end: the frames in between may be skipped, the last is shown.
    ActionChains(browser).click_and_hold(slider).move_by_offset(slider.size["width"] // 2 - 2, 0).release().perform()
    np.testing.assert_allclose(rendered(browser, 8, "sprites"), expected[8], atol=1)
    browser.save_screenshot(str(tmp_path / "4-sprites-dragged.png"))


@pytest.mark.slow
def test_live_page_says_a_bad_upload_in_one_line(browser, url, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(url + "/")
    rendered(browser, 0, "mnist")
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"not an image")
    browser.find_element(By.CSS_SELECTOR, "#pick-background input[type=file]").send_keys(str(bad))
    wait_for(browser, "document.body.dataset.state === 'error'", "the error shown")
    assert browser.find_element(By.ID, "status").text == (
        "encoding failed: image 'notes.png' (12 bytes) is not an image Pillow can read; "
        "expected PNG, JPEG, GIF, BMP, ...")
    assert not browser.find_element(By.ID, "slider").is_enabled()
