"""The ingest_big benchmark (issue 12, requirement 7): `clv data ingest` on a transactions file
of 10M and 50M lines (quick: 1M) as a CSV, a gzipped CSV and a folder of Parquet parts.

Per size and format: the file is written (benchmarks.bigfile) into a fresh folder under
`benchmarks/work/ingest-big/`, ingested into a fresh workspace by `python -m clv data ingest
PATH --json` in a subprocess, and both are deleted before the next one (disk use is one file,
its workspace and the staging). Each ingest runs under its own small helper process, whose
`getrusage(RUSAGE_CHILDREN).ru_maxrss` is the ingest's peak RSS alone (a child carries over
the peak of the process it was forked from; the helper's own peak, some MiB, is the floor).
Reported: wall time (with interpreter start), rows/s, peak RSS, CPU seconds, file and stored
sizes, the effective `ingest.chunk_rows`, the load average, and whether the accepted and
quarantined counts equal the planted ones. A failed ingest is reported with its error and the
other formats still run.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import case
from benchmarks.bigfile import FORMATS, SUFFIX, BigFile, Format, write_transactions
from benchmarks.case import Figures
from benchmarks.children import rusage
from clv.core.settings import load_settings

WORK = case.WORK / "ingest-big"
PLAN: tuple[tuple[int, tuple[Format, ...]], ...] = (
    (10_000_000, FORMATS),
    (50_000_000, FORMATS),
)
QUICK_PLAN: tuple[tuple[int, tuple[Format, ...]], ...] = ((1_000_000, FORMATS),)
SMALL_BUDGET_MB = 1024
"""One more 50M-line CSV run with `compute.memory_budget_mb` at this (default 4096): the peak
follows the budget, not the file (DuckDB spills above it)."""
BLOCK_ROWS = 1_000_000
"""Rows per written block, and so per Parquet part."""
QUICK_BLOCK_ROWS = 250_000
"""Quick: 4 parts of 250,000 rows, so that the parts folder has more than one part."""
GZIP_LEVEL = 1
DISK_FACTOR = 3.0
"""Free disk needed before a run, in multiples of the CSV's size: the file, the staged chunks
and the stored table, with room to spare."""
CSV_BYTES_PER_LINE = 72
"""A bound of the CSV's size per line (67 bytes measured at 10M lines)."""
PASSED_SETTINGS = "CLV_INGEST__"
"""The only CLV_* variables passed to the ingest (to try another `ingest.chunk_rows`); the
rest of the caller's environment's CLV_* settings are dropped, as in the other benchmarks."""


def ingest_big(*, quick: bool) -> Figures:
    """Every (size, format) of the plan, one after the other; see the module docstring."""
    plan = QUICK_PLAN if quick else PLAN
    block_rows = QUICK_BLOCK_ROWS if quick else BLOCK_ROWS
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLV_")}
    env.update({k: v for k, v in os.environ.items() if k.startswith(PASSED_SETTINGS)})
    shutil.rmtree(WORK, ignore_errors=True)
    runs: dict[str, Figures] = {}
    for lines, formats in plan:
        for fmt in formats:
            label = f"{fmt}-{lines}"
            print(f"ingest_big: {label}", file=sys.stderr, flush=True)
            runs[label] = _one(lines, fmt, block_rows=block_rows, env=env, folder=WORK / label)
    if not quick:
        lines = max(n for n, _ in plan)
        label = f"csv-{lines}-budget-{SMALL_BUDGET_MB}"
        print(f"ingest_big: {label}", file=sys.stderr, flush=True)
        small = env | {"CLV_COMPUTE__MEMORY_BUDGET_MB": str(SMALL_BUDGET_MB)}
        runs[label] = _one(lines, "csv", block_rows=block_rows, env=small, folder=WORK / label)
    shutil.rmtree(WORK, ignore_errors=True)
    measured = [r for r in runs.values() if "error" not in r and "skipped" not in r]
    return {
        "plan": {str(lines): list(formats) for lines, formats in plan},
        "block_rows": block_rows,
        "gzip_level": GZIP_LEVEL,
        "cpus": os.cpu_count(),
        "memory_total_mib": _memory_total_mib(),
        "ingest_settings_passed": {k: v for k, v in env.items() if k.startswith("CLV_")},
        "runs": runs,
        "failed": [k for k, r in runs.items() if "error" in r],
        "skipped": [k for k, r in runs.items() if "skipped" in r],
        "all_counts_match": bool(measured) and all(r["counts_match"] for r in measured),
    }


def _one(lines: int, fmt: Format, *, block_rows: int, env: dict[str, str], folder: Path) -> Figures:
    """Write one file, ingest it in a measured subprocess, check the counts, delete both."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    need = DISK_FACTOR * lines * CSV_BYTES_PER_LINE
    free = shutil.disk_usage(folder).free
    if free < need:
        shutil.rmtree(folder, ignore_errors=True)
        return {"skipped": f"{free / 2**30:.1f} GiB free on disk, needs {need / 2**30:.1f} GiB"}
    try:
        source = folder / "raw" / f"transactions{SUFFIX[fmt]}"
        written = write_transactions(
            source, lines=lines, fmt=fmt, block_rows=block_rows, gzip_level=GZIP_LEVEL
        )
        workspace = folder / "workspace"
        workspace.mkdir()
        settings = load_settings(workspace, environ=env)
        cmd = [sys.executable, "-m", "clv", "--workspace", str(workspace), "data", "ingest"]
        cmd += [str(source), "--json"]
        if fmt == "parquet":  # a folder of parts named part-*.parquet: say which table it is
            cmd += ["--table", "transactions"]
        figures: Figures = {
            "lines": lines,
            "format": fmt,
            "file_mib": _mib(written.bytes),
            "blocks": written.blocks,
            "customers": written.customers,
            "orders": written.orders,
            "generate_seconds": written.seconds,
            "generate_mib_per_second": round(_mib(written.bytes) / max(written.seconds, 1e-9), 1),
            "chunk_rows": settings.ingest.chunk_rows,
            "memory_budget_mb": settings.compute.memory_budget_mb,
            "command": " ".join(["clv", *cmd[3:]]),
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "load_average_before": [round(x, 2) for x in os.getloadavg()],
        }
        figures.update(_measure(cmd, env=env, logs=folder))
        figures["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        if "error" not in figures:
            figures["rows_per_second"] = round(lines / float(figures["wall_seconds"]))  # type: ignore[arg-type]
            figures["stored_mib"] = _mib(_size(settings.offline_dir))
            figures["quarantine_mib"] = _mib(_size(settings.quarantine_dir))
            figures["workspace_mib"] = _mib(_size(workspace))
            result = json.loads((folder / "ingest.stdout").read_text())["results"]
            figures.update(_check(result, written))
        return figures
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _measure(cmd: list[str], *, env: dict[str, str], logs: Path) -> Figures:
    """Run `cmd` under a fresh helper process (benchmarks.children.rusage): wall time, peak RSS
    and CPU of `cmd` alone."""
    out, err = logs / "ingest.stdout", logs / "ingest.stderr"
    m = rusage.in_child(cmd, stdout=out, stderr=err, env=env)
    figures: Figures = {
        "wall_seconds": round(m["wall_seconds"], 2),
        "peak_rss_mib": round(m["peak_rss_kib"] / 1024, 1),
        "cpu_seconds": round(m["user_seconds"] + m["system_seconds"], 1),
        "measurement_floor_mib": (
            round(m["helper_peak_kib"] / 1024, 1) if m["helper_peak_kib"] is not None else None
        ),
    }
    if m["returncode"] != 0:
        tail = err.read_text(errors="replace").strip().splitlines()[-5:]
        figures["error"] = f"exit {m['returncode']}: " + " | ".join(tail)
    return figures


def _check(results: list[dict[str, object]], written: BigFile) -> Figures:
    """The ingest's counts (summed over its results) against the planted ones."""
    read = accepted = present = 0
    quarantined: dict[str, int] = {}
    for r in results:
        read += int(str(r["read"]))
        accepted += int(str(r["inserted"])) + int(str(r["replaced"]))
        present += int(str(r["unchanged"]))
        bad = r["quarantined"]
        assert isinstance(bad, dict)
        for k, v in bad.items():
            quarantined[k] = quarantined.get(k, 0) + int(v)
    expected = {k: v for k, v in written.quarantined.items() if v}
    problems = []
    if read != written.lines:
        problems.append(f"read {read:,}, wrote {written.lines:,}")
    if accepted != written.accepted:
        problems.append(f"accepted {accepted:,}, expected {written.accepted:,}")
    if present:
        problems.append(f"{present:,} already present in a fresh workspace")
    for k in sorted(set(quarantined) | set(expected)):
        got, want = quarantined.get(k, 0), expected.get(k, 0)
        if got != want:
            problems.append(f"{k} {got:,}, expected {want:,}")
    return {
        "read": read,
        "accepted": accepted,
        "expected_accepted": written.accepted,
        "quarantined": quarantined,
        "expected_quarantined": expected,
        "counts_match": not problems,
        **({"count_problems": problems} if problems else {}),
    }


def _size(path: Path) -> int:
    if not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _mib(n: int) -> float:
    return round(n / 2**20, 1)


def _memory_total_mib() -> int | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20)
    except (ValueError, OSError, AttributeError):
        return None
