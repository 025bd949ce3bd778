"""The embedded local DynamoDB engine: ministack, run as a child process on 127.0.0.1.

ministack is thread-safe and its writes do not slow with table size, where in-process moto
is not thread-safe and slows with table size (`make bench`: a test's sendGift on each). It
pins graphql-core 3.2 (Strawberry needs 3.3), so it lives in its own virtualenv
(.venv-engine, made by `make serve`) and runs under handlers/engine_launcher.py, which saves
its state to `data_dir` every `save_seconds` and at a clean stop.

`supervise` restarts it, on the same port and data dir, when it dies.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

LAUNCHER = Path(__file__).resolve().parent.parent / "handlers" / "engine_launcher.py"
log = logging.getLogger("livecoins.engine")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


try:  # resolved here, not after fork: the server has threads when it restarts the engine
    _prctl: Callable[..., int] | None = ctypes.CDLL("libc.so.6", use_errno=True).prctl
except OSError:
    _prctl = None


def _die_with_parent() -> None:
    """Linux: the engine gets SIGTERM when the server process dies, even by SIGKILL."""
    if _prctl is not None:
        _prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class LocalEngine:
    """`command` is ministack's script in the engine's virtualenv; the launcher runs under the
    `python` beside it (the interpreter that script's virtualenv provides)."""

    def __init__(
        self,
        command: str,
        data_dir: str | None,
        port: int | None = None,
        save_seconds: float | None = None,
    ) -> None:
        self.command = command
        self.data_dir = data_dir
        self.port = port or free_port()
        self.save_seconds = save_seconds
        self.process: subprocess.Popen[bytes] | None = None
        self.restarting = False
        self.lost = False  # supervise gave up

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def python(self) -> Path:
        return Path(self.command).resolve().parent / "python"

    def start(self, timeout: float = 30.0) -> str:
        self.spawn()
        self.wait_ready(timeout)
        return self.endpoint

    def spawn(self) -> None:
        if not self.python.exists():
            raise RuntimeError(f"{self.python} is missing: run `make serve` to install it")
        env = {
            **os.environ,
            "SERVICES": "dynamodb",
            "BIND_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(self.port),
            "LOG_LEVEL": "WARNING",
            "IOT_MTLS_ENABLED": "0",
            "SFTP_ENABLED": "0",
        }
        if self.save_seconds is not None:
            env["LIVECOINS_ENGINE_SAVE_SECONDS"] = str(self.save_seconds)
        if self.data_dir:
            Path(self.data_dir).mkdir(parents=True, exist_ok=True)
            env.update(PERSIST_STATE="1", STATE_DIR=str(Path(self.data_dir).resolve()))
        self.process = subprocess.Popen(  # noqa: S603 - our own venv's interpreter
            [str(self.python), "-I", str(LAUNCHER)],
            env=env,
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches the server only; it stops the engine
            preexec_fn=_die_with_parent,  # only calls the prctl resolved above
        )

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError("the local DynamoDB engine exited at start")
            if self._answers():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("the local DynamoDB engine did not start in time")

    def _answers(self, timeout: float = 1.0) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/_ministack/health", timeout=timeout):  # noqa: S310
                return True
        except OSError:
            return False

    def alive(self) -> bool:
        """The process runs and answers its health endpoint."""
        return self.process is not None and self.process.poll() is None and self._answers()

    def status(self) -> str:
        """One of up, restarting, down; blocks up to a second: call it from a thread."""
        if self.restarting:
            return "restarting"
        return "up" if self.alive() else "down"

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # lets it save its state
            try:
                self.process.wait(timeout=60)  # a large state takes seconds to save
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    async def supervise(
        self, every: float = 0.5, hung_after: float = 10.0, attempts: int = 5
    ) -> None:
        """Restart the engine whenever it exits (or stops answering for `hung_after` seconds).

        Restarts go to the same port and data dir, so clients' endpoint stays valid; failed
        starts back off 0.5, 1, 2, 4 s. Returns, with `lost` set, after `attempts` failed
        starts in a row. An engine stopped with `stop` is left alone.
        """
        silent_since: float | None = None
        while True:
            await asyncio.sleep(every)
            process = self.process
            if process is None:
                continue
            if process.poll() is None:
                if await asyncio.to_thread(self._answers, 2.0):
                    silent_since = None
                    continue
                silent_since = silent_since or time.monotonic()
                if time.monotonic() - silent_since < hung_after:
                    continue
                log.warning("the local DynamoDB engine has not answered for %.0f s", hung_after)
                process.kill()
                await asyncio.to_thread(process.wait)
            silent_since = None
            log.warning(
                "the local DynamoDB engine stopped (exit code %s): restarting it on port %d",
                process.returncode,
                self.port,
            )
            self.restarting = True
            try:
                if not await self._restart(attempts):
                    self.lost = True
                    return
            finally:
                self.restarting = False

    async def _restart(self, attempts: int) -> bool:
        for attempt in range(1, attempts + 1):
            started = time.monotonic()
            try:
                self.spawn()  # on the loop's thread: PR_SET_PDEATHSIG follows the spawning thread
                await asyncio.to_thread(self.wait_ready, 20.0)
            except RuntimeError as error:
                log.warning("restart %d of %d failed: %s", attempt, attempts, error)
                if attempt < attempts:
                    await asyncio.sleep(0.5 * 2 ** (attempt - 1))
                continue
            log.warning(
                "the local DynamoDB engine is back (%.1f s to start)", time.monotonic() - started
            )
            return True
        log.error("the local DynamoDB engine could not be restarted (%d attempts)", attempts)
        return False
