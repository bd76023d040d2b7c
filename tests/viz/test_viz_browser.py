"""The HTML viewer in a real browser: headless Chromium draws it with WebGL through SwiftShader.

Checks that the page runs without a JavaScript error (the page marks its root element
``data-viewer="drawn"`` when its script has run and ``data-viewer-error`` on an uncaught error,
read back with ``--dump-dom``; the console's ``Uncaught`` lines are checked too), and that the
first view draws the room: the screenshot is not blank and holds the floor's colour (the palette's
floor on a face pointing up, which the viewer draws unshaded).

Skipped, with the reason, where no Chromium is installed (``.ci/run`` installs Debian's
``chromium`` when it can). The browser runs through ``subprocess`` here only, never in ``src/``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from torchssc.datasets import get_dataset_spec
from torchssc.geometry import NYU_INTRINSICS
from torchssc.predict.observation import apply_observation
from torchssc.prepare.pipeline import prepare_frame
from torchssc.synth.generator import generate_frame
from torchssc.viz.html import write_html

BROWSERS = ("chromium", "chromium-browser")
WINDOW = (800, 600)
FLAGS = ("--headless=new", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
         f"--window-size={WINDOW[0]},{WINDOW[1]}", "--enable-logging=stderr", "--v=0")
TIMEOUT = 180  # seconds for one browser run (a loaded single core: a few seconds normally)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> str:
    """The Chromium executable, or skip with the reason (before any page is made)."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(f"no Chromium found ({' or '.join(BROWSERS)} on PATH): install Debian's 'chromium' "
                "(.ci/run does when it runs as root with apt-get)")


def _run(browser: str, page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    """One headless run on ``page`` with its own profile folder; fails the test on a bad exit."""
    cmd = [browser, *FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, f"{browser} exited {done.returncode}: {done.stderr[-2000:]}"
    return done


def _console_errors(stderr: str) -> list[str]:
    """The console lines of a run that report an error (Chromium's ``--enable-logging`` format)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line and re.search(r"Uncaught|Error", line)]


@pytest.fixture(scope="module")
def room_page(tmp_path_factory) -> Path:
    """A synthetic room as ``predict`` would write it (the truth through the observation rule),
    with its camera: the viewer's first view stands behind that camera."""
    frame = generate_frame(3, 1, noise="none")
    truth = prepare_frame(frame.depth, frame.pose, frame.origin, frame.labels, intrinsics=NYU_INTRINSICS)
    labels = apply_observation(truth.label.reshape(60, 36, 60), truth.visibility.reshape(60, 36, 60))
    page = tmp_path_factory.mktemp("viewer") / "room.html"
    write_html(page, labels, pose=frame.pose, origin=frame.origin)
    return page


def test_viewer_runs_without_javascript_error(browser, room_page, tmp_path):
    done = _run(browser, room_page, tmp_path / "profile", "--dump-dom")
    root = re.search(r"<html[^>]*>", done.stdout)
    assert root, f"no page in the DOM dump: {done.stdout[:300]!r}"
    error = re.search(r'data-viewer-error="([^"]*)"', root.group(0))
    assert error is None, f"JavaScript error: {error.group(1)}"
    assert 'data-viewer="drawn"' in root.group(0), f"the viewer's script did not finish with WebGL: {root.group(0)}"
    assert _console_errors(done.stderr) == []


def test_viewer_catches_a_broken_script(browser, room_page, tmp_path):
    """The check above can fail: a page whose script throws is reported."""
    broken = tmp_path / "broken.html"
    text = room_page.read_text(encoding="utf-8")
    broken.write_text(text.replace("upload();\ndocument", "no_such_function();\ndocument"), encoding="utf-8")
    done = _run(browser, broken, tmp_path / "profile", "--dump-dom")
    assert 'data-viewer-error="Uncaught ReferenceError: no_such_function' in done.stdout
    assert 'data-viewer="drawn"' not in done.stdout
    assert any("no_such_function" in line for line in _console_errors(done.stderr))


def test_first_view_draws_the_room(browser, room_page, tmp_path):
    shot = tmp_path / "view.png"
    _run(browser, room_page, tmp_path / "profile", f"--screenshot={shot}")
    image = np.asarray(Image.open(shot).convert("RGB")).astype(np.int16)
    assert image.shape == (WINDOW[1], WINDOW[0], 3)
    # not blank: most of the window is drawn (the background is white)
    drawn = (np.abs(image - 255).max(axis=-1) > 8).mean()
    assert drawn > 0.4, f"only {drawn:.0%} of the screenshot differs from the white background"
    # the floor: its palette colour (upward faces are unshaded), on far more pixels than the
    # legend's 12x12 swatch
    spec = get_dataset_spec("nyu")
    floor = np.asarray(spec.palette[spec.classes.index("floor")], np.int16)
    near = np.abs(image - floor).max(axis=-1) <= 10
    assert near.sum() > 5000, f"{int(near.sum())} pixels of the floor's colour {floor.tolist()}"
    # and it is in the room's picture, not in the legend panel (top-left)
    assert near[:, 340:].sum() > 2000
