"""The wheel, not the checkout: built, installed into a fresh virtual environment outside the
checkout, and a small `clv demo` run from it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import clv

CHECKOUT = Path(__file__).resolve().parents[2]


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 900):
    out = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert out.returncode == 0, (cmd, out.stdout[-3000:], out.stderr[-3000:])
    return out


@pytest.mark.slow
def test_the_wheel_installs_without_the_checkout_and_runs_a_small_demo(tmp_path: Path) -> None:
    built = tmp_path / "dist"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(built),
            str(CHECKOUT),
        ],
        cwd=tmp_path,
    )
    (wheel,) = built.glob("clv-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in clv.SUBPACKAGES:
        assert f"clv/{package}/__init__.py" in names, package
    assert "clv/feature_repo/feature_services.py" in names  # the Feast declarations ship
    assert not any(n.split("/")[0] in {"training", "features", "tests"} for n in names)

    # A fresh environment: clv comes from the wheel only; its dependencies are this
    # environment's (a .pth line, so the checkout's editable finder is not loaded).
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    site = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        cwd=tmp_path,
    ).stdout.strip()
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            str(wheel),
        ],
        cwd=tmp_path,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLV_", "PYTHON"))}
    where = _run(
        [
            str(python),
            "-c",
            "import clv.training.train, clv.feature_repo; "
            "print(clv.training.train.__file__, clv.feature_repo.__file__)",
        ],
        cwd=tmp_path,
        env=env,
    ).stdout.split()
    assert all(Path(w).is_relative_to(site) for w in where), where

    workspace = tmp_path / "ws"
    env["CLV_READINESS__ENFORCE"] = "false"  # a small world, below the repeat-buyer minimum
    env["CLV_EVALUATION__BACKTEST_ORIGINS"] = "0"  # the install is under test, not the protocol
    demo = _run(
        [
            str(venv / "bin" / "clv"),
            "--workspace",
            str(workspace),
            "demo",
            "--customers",
            "400",
            "--months",
            "48",
            "--trials",
            "1",
            "--json",
        ],
        cwd=tmp_path,
        env=env,
    )
    steps = json.loads(demo.stdout)["steps"]
    assert steps["train"]["version"] == "1"
    assert steps["features"]["service"] == "clv_v1"
    assert all(s["clv"] is not None for s in steps["score"]["scores"])
