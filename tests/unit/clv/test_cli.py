from __future__ import annotations

from pathlib import Path

import pytest

from clv.cli.main import main

GROUPS = ["data", "features", "train", "registry", "serve", "score", "monitor", "retrain", "demo"]


def test_every_group_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for group in GROUPS:
        assert group in out
        assert main([group, "--help"]) == 0
        assert "--help" in capsys.readouterr().out


def test_failure_is_one_line_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--workspace", str(tmp_path), "data", "ingest", str(tmp_path / "nope.csv")])
    err = capsys.readouterr().err
    assert code != 0
    assert err.startswith("error: ")
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_bad_config_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "clv.yaml").write_text("model:\n  horizon_days: -1\n")
    code = main(["--workspace", str(tmp_path), "data", "status"])
    err = capsys.readouterr().err
    assert code == 1
    assert "horizon_days" in err and "Traceback" not in err


def test_demo_refuses_an_unknown_world_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--workspace", str(tmp_path), "demo", "--world", "saas_typo"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: --world 'saas_typo'") and "saas_mixed" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "data").exists()  # refused before generating anything
