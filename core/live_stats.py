"""The live-stats contract: the per-alias window summary that every `clv serve` writes and the
canary judgement (`clv registry status`, the server's own guardrails) reads.

The file is `<workspace>/.clv/serving/live_stats.json`: `{"aliases": {alias: {"version",
"requests", "errors", "latency_p95_ms", "predictions"}}, "routing": {alias: version, "share",
"shadow"}, "written_at": unix seconds, "pid": the writer}`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path

from clv.core.settings import Settings

LIVE_STATS_FILE = "live_stats.json"


def live_stats_path(settings: Settings) -> Path:
    """Where the server writes its per-alias live stats."""
    return settings.state_dir / "serving" / LIVE_STATS_FILE


def write_live_stats(settings: Settings, snapshot: Mapping[str, object]) -> Path:
    """Atomically replace the live-stats file with `snapshot` (aliases and routing), stamped with
    the time and the writer's pid."""
    path = live_stats_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {**snapshot, "written_at": time.time(), "pid": os.getpid()}
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)
    return path


def read_live_stats_doc(settings: Settings) -> dict[str, object] | None:
    """The last document written, or None when there is none or it cannot be read."""
    try:
        doc = json.loads(live_stats_path(settings).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None
