"""Child processes clv starts (the demo's server, workers): a free port, waiting until a server
answers, stopping a process; and who a process is (`run_owner`, `process_state`), so that a
later command can tell a dead owner from a live one."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import httpx

from clv.core.errors import ClvError


def free_port(host: str = "127.0.0.1") -> int:
    """A port on `host` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes], *, timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_for_http(url: str, proc: subprocess.Popen[bytes], *, timeout: float) -> None:
    """Poll `url` until it answers 200; fail at once if the server process has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ClvError(f"the server exited with code {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise ClvError(f"{url} did not answer 200 within {timeout:.0f} s")


def run_owner() -> str:
    """`host:pid:start` of this process (the RUN_OWNER_TAG of its training runs)."""
    pid = os.getpid()
    state = process_state(pid)
    return f"{socket.gethostname()}:{pid}:{state[1] if state is not None else '-'}"


def process_state(pid: int) -> tuple[str, str] | None:
    """Process `pid`'s state letter (`Z` for a zombie) and start time in clock ticks since
    boot (`/proc/<pid>/stat` fields 3 and 22, proc(5)); None without /proc or such a process.
    With the pid, the start time names one process: pids are reused, start times are not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    after_name = stat.rsplit(")", 1)[-1].split()  # field 3 onwards
    return (after_name[0], after_name[19]) if len(after_name) > 19 else None
