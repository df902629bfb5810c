"""The monitoring pages in headless Chromium: they render the verdict, log no console message.

Needs Debian's `chromium` (`apt-get install chromium`); skipped with that reason when absent.
Console messages are read from Chromium's own log (`--enable-logging=stderr`), where every
`console.*` call and uncaught error appears as a `CONSOLE` line. The screenshot of the run page
is saved in the test's tmp dir (path printed).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clv.core.settings import load_settings
from clv.monitoring.run import run_monitor

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)"
    ),
]
CONSOLE = re.compile(r":CONSOLE[:(]\d*\)?\]?\s*(.*)")


def chromium(page: Path, profile: Path, *extra: str) -> tuple[str, list[str]]:
    """Load `page` headless; return (stdout, console lines)."""
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


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(5)
    n = 2_000

    def frame(shift: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "customer_id": [f"c{i}" for i in range(n)],
                "event_timestamp": pd.Timestamp("2025-06-01", tz="UTC"),
                "spend_90d": rng.gamma(2.0, 50.0, n) + shift,
                "logins_30d": rng.poisson(3.0 + shift / 50, n).astype(float),
                "plan": rng.choice(["free", "basic", "premium"], n),
                "clv": rng.gamma(2.0, 100.0, n) + shift,
                "churn_probability": rng.beta(2, 5, n),
            }
        )

    return frame(0.0), frame(60.0)


def test_pages_render_the_verdict_without_console_errors(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "ws", environ={})
    reference, current = _frames()
    result = run_monitor(settings, reference=reference, current=current)
    assert result.verdict.value == "RETRAIN"

    dom, console = chromium(result.index_path, tmp_path / "p1", "--dump-dom")
    assert 'class="verdict"' in dom and ">RETRAIN</div>" in dom
    assert "<h2>Drift</h2>" in dom and "<h2>Calibration</h2>" in dom
    assert console == [], console

    shot = tmp_path / "report.png"
    chromium(result.index_path, tmp_path / "p2", "--window-size=1200,2200", f"--screenshot={shot}")
    assert shot.stat().st_size > 20_000
    print(f"screenshot: {shot}")

    runs, console = chromium(settings.reports_dir / "index.html", tmp_path / "p3", "--dump-dom")
    assert "RETRAIN" in runs and "2025-06-01" in runs
    assert console == [], console

    evidently, console = chromium(result.html_path, tmp_path / "p4", "--dump-dom")
    assert "spend_90d" in evidently  # the report's scripts ran and drew the columns
    assert console == [], console
