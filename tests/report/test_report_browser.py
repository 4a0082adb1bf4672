"""`report.html` in a real browser: headless Chromium (Debian's `chromium` package) loads the page of a
synthetic run; every image must decode, be shown at about the size it was drawn (so its text is as readable
as the PNG), and the console must stay empty. Skips where Chromium is not installed."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from rich.console import Console
from synthetic_run import make_plan, write_run

from runtime.report import report

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed "
                                                         "(Debian: apt-get install chromium)")

# Appended to a copy of the page: after load, records each image as [decoded, drawn width, shown width].
PROBE = """<script>
window.addEventListener('load', () => document.body.setAttribute('data-probe', JSON.stringify(
  [...document.images].map(i => [i.complete && i.naturalWidth > 0, i.naturalWidth, i.clientWidth]))));
</script>"""


def open_in_chromium(page: Path, tmp_path: Path) -> tuple[list[list], list[str]]:
    """Load ``page`` (with the probe) in headless Chromium at 1400x1000; returns the probe's image records
    and the console lines Chromium logged."""
    probed = tmp_path / f"probed-{page.name}"
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    out = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                          "--v=0", "--window-size=1400,1000", "--virtual-time-budget=5000",
                          f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", probed.as_uri()],
                         capture_output=True, text=True, timeout=120)
    found = re.search(r'data-probe="([^"]*)"', out.stdout)
    assert found, f"the page never finished loading:\n{out.stderr[-2000:]}"
    images = json.loads(found.group(1).replace("&quot;", '"'))
    return images, [line for line in out.stderr.splitlines() if ":CONSOLE" in line]


def test_the_probe_sees_a_broken_image_and_a_console_error(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text('<html><body><img src="data:image/png;base64,AAAA">'
                    '<script>console.error("boom")</script></body></html>')
    images, console = open_in_chromium(page, tmp_path)
    assert [decoded for decoded, *_ in images] == [False]
    assert any('"boom"' in line for line in console)


def test_report_loads_in_chromium_with_every_image_and_no_console_message(tmp_path):
    run_dir = write_run(tmp_path / "runs" / "mini", make_plan())
    page = report(run_dir, tmp_path / "out", console=Console(file=io.StringIO(), width=140, color_system=None))
    images, console = open_in_chromium(page, tmp_path)
    assert len(images) >= 2
    for decoded, drawn, shown in images:
        assert decoded
        assert 0.75 <= shown / drawn <= 1.0, (drawn, shown)  # never blown up; shrunk by at most a quarter
    assert console == []
