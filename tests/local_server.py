"""`livecoins serve` as a user starts it, for the README walkthroughs and the browser test:
the real command in a child process on 127.0.0.1 and a free port, on its own embedded engine
and a temporary data dir. It dies with the test process (PR_SET_PDEATHSIG) if that is
killed; otherwise it is stopped with SIGINT, as Ctrl-C would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from infra.engine import _die_with_parent, free_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class LocalServer:
    url: str  # http://127.0.0.1:<port>
    process: subprocess.Popen[str]
    started_in: float
    output: list[str]


def start(data_dir: Path, timeout: float = 60.0) -> LocalServer:
    port = free_port()
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LIVECOINS_DATA_DIR": str(data_dir),
        "LIVECOINS_ENGINE_COMMAND": str(ROOT / ".venv-engine" / "bin" / "ministack"),
        # this checkout's code, whichever checkout the virtualenv was installed from
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("LIVECOINS_DYNAMODB_ENDPOINT", "LIVECOINS_TABLE_PREFIX", "LIVECOINS_JWT_SECRET"):
        env.pop(name, None)
    began = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "handlers.cli", "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_die_with_parent,
    )
    assert process.stdout is not None
    output: list[str] = []
    while not any(line.startswith("  health:") for line in output):  # the last line of "ready"
        line = process.stdout.readline()
        if not line:
            raise AssertionError("livecoins serve stopped:\n" + "".join(output))
        output.append(line)
        if time.monotonic() - began > timeout:
            process.kill()
            raise AssertionError("livecoins serve did not start:\n" + "".join(output))
    url = f"http://127.0.0.1:{port}"
    with urllib.request.urlopen(f"{url}/health", timeout=5) as response:  # noqa: S310
        assert response.status == 200
    return LocalServer(url, process, time.monotonic() - began, output)


def stop(server: LocalServer) -> str:
    """Stop it as Ctrl-C does; returns what it printed after starting."""
    server.process.send_signal(signal.SIGINT)
    try:
        rest, _ = server.process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        rest, _ = server.process.communicate()
    return rest
