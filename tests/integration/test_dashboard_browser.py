"""The dashboard (clv.decisions.dashboard) in headless Chromium, offline: it renders every
section and its charts, and logs no console message, with its inputs and without them.

Needs Debian's `chromium` (`apt-get install chromium`); skipped with that reason when absent.
Console messages are read from Chromium's own log (`--enable-logging=stderr`), where every
`console.*` call and uncaught error appears as a `CONSOLE` line. Every request goes to a proxy
that does not exist, and Chromium's net log (`--log-net-log`) lists the hosts it asked for:
none but Chromium's own background services (a page's image from the web would be there).
The screenshot is saved in the test's tmp dir and copied to docs/images/dashboard.png (the
README shows it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from clv.core.settings import load_settings
from clv.decisions.dashboard import ModelHealth, render_dashboard
from tests.unit.decisions.dashboard_inputs import HEALTH, write_inputs

CHROMIUM = Path("/usr/bin/chromium")
DOCS_IMAGE = Path(__file__).resolve().parents[2] / "docs" / "images" / "dashboard.png"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)"
    ),
]
CONSOLE = re.compile(r":CONSOLE[:(]\d*\)?\]?\s*(.*)")
URL = re.compile(r'"https?://([^/"\s:\\]+)')
CHROMIUM_OWN = ("google.com", "googleapis.com", "gstatic.com", "gvt1.com")
"""Hosts headless Chromium contacts by itself (time, updates, accounts), whatever the page."""
SECTIONS = ("executive", "product", "crm", "experiments", "model-health")


def chromium(page: Path, profile: Path, *extra: str) -> tuple[str, list[str]]:
    """Load `page` headless, with no network; return (stdout, console lines)."""
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--proxy-server=http://127.0.0.1:9",  # the discard port: any web request fails
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=15000",
        *extra,
        page.as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    console = [m.group(1) for line in done.stderr.splitlines() if (m := CONSOLE.search(line))]
    return done.stdout, console


def hosts_asked(net_log: Path) -> set[str]:
    """The web hosts in a Chromium net log, less Chromium's own."""
    hosts = set(URL.findall(net_log.read_text(errors="replace")))
    return {h for h in hosts if not any(h == o or h.endswith("." + o) for o in CHROMIUM_OWN)}


def test_the_dashboard_renders_offline_without_console_errors(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "ws", environ={})
    write_inputs(settings)
    page = render_dashboard(settings, health=HEALTH)

    net_log = tmp_path / "net.json"
    dom, console = chromium(page, tmp_path / "p1", "--dump-dom", f"--log-net-log={net_log}")
    for key in SECTIONS:
        assert f'<section id="{key}">' in dom
    assert dom.count('<svg class="chart"') == 6
    assert "0.60 (0.45 to 0.75)" in dom and ">WARN</span>" in dom
    assert console == [], console
    assert hosts_asked(net_log) == set()

    shot = tmp_path / "dashboard.png"
    chromium(page, tmp_path / "p2", "--window-size=1280,2400", f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 50_000  # charts and tables, not a blank page
    DOCS_IMAGE.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, DOCS_IMAGE)
    print(f"screenshot: {shot} (copied to {DOCS_IMAGE})")


def test_the_dashboard_without_inputs_renders_its_sentences(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "ws", environ={})
    page = render_dashboard(settings, health=ModelHealth(error="ServiceUnavailable: no answer"))

    dom, console = chromium(page, tmp_path / "p", "--dump-dom")
    assert dom.count('<p class="missing">') >= 9
    assert "The model registry could not be read" in dom
    assert console == [], console
