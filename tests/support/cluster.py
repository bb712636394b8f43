"""A real 3-node NATS JetStream cluster on loopback, from the configuration files in deploy/nats/.

The deploy files are rendered for a test by replacing a handful of exact lines -- listen
addresses, the store directory, the route URLs -- with loopback ports and a temporary directory;
everything else (accounts, users, permissions, JetStream and cluster settings) is used as
written. A line that is not found fails loudly, so the deploy files and this renderer cannot
drift apart silently. Passwords go through the environment, as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agora.config import Settings
from agora.embedded import find_nats_server, free_port
from agora.errors import AgoraError
from agora.stack import Stack

DEPLOY_NATS = Path(__file__).resolve().parents[2] / "deploy" / "nats"
NODES = ("nats-1", "nats-2", "nats-3")
ROLES = ("admin", "ingest", "simulator", "moderation", "worker", "forum-web", "breakglass", "sys")
"""Users of deploy/nats/accounts.conf; each one's password is NATS_<ROLE>_PASSWORD."""


def inbox_prefix(role: str) -> str:
    """The inbox prefix ``role``'s user may subscribe under (``AGORA_NATS_INBOX_PREFIX``)."""
    return f"_INBOX_{role}"


def password_variable(role: str) -> str:
    """The environment variable holding ``role``'s password in the deploy config."""
    return f"NATS_{role.upper().replace('-', '_')}_PASSWORD"


def role_passwords() -> dict[str, str]:
    """A password per role (letters and digits, starting with a letter, as the config asks)."""
    return {role: f"pw{role.replace('-', '')}{os.getpid()}x" for role in ROLES}


def render(text: str, replacements: dict[str, str]) -> str:
    """Replace each key (an exact substring of the deploy file) by its value; all must occur."""
    for old, new in replacements.items():
        if old not in text:
            raise AssertionError(f"deploy/nats/nats.conf no longer contains {old!r}")
        text = text.replace(old, new)
    return text


@dataclass
class Node:
    """One nats-server of the cluster: its ports, rendered config, store and process."""

    name: str
    directory: Path
    client_port: int
    monitor_port: int
    cluster_port: int
    env: dict[str, str]
    binary: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The client URL."""
        return f"nats://127.0.0.1:{self.client_port}"

    @property
    def config(self) -> Path:
        """The rendered configuration file."""
        return self.directory / "nats.conf"

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the server (on the same ports and store as before, after a kill)."""
        assert not self.running
        self.process = subprocess.Popen(
            [str(self.binary), "--config", str(self.config), "--log", str(self.log)],
            env={**os.environ, **self.env, "NATS_SERVER_NAME": self.name},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def log(self) -> Path:
        """The server's log file."""
        return self.directory / "nats-server.log"

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def monitor(self, path: str) -> Any:
        """GET a monitoring endpoint and decode its JSON (even on a 503 answer)."""
        url = f"http://127.0.0.1:{self.monitor_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            return json.loads(error.read())

    def healthy(self) -> bool:
        """True when the server answers its health check with JetStream current."""
        if not self.running:
            return False
        try:
            return bool(self.monitor("/healthz?js-enabled-only=true").get("status") == "ok")
        except (OSError, ValueError):
            return False

    def stream_messages(self, account: str = "AGORA", stream: str = "AGORA") -> int | None:
        """Messages of ``stream`` in this server's own replica (None if it holds none yet)."""
        document = self.monitor(f"/jsz?acc={account}&streams=true")
        for detail in document.get("account_details") or []:
            for info in detail.get("stream_detail") or []:
                if info.get("name") == stream:
                    return int(info["state"]["messages"])
        return None


@dataclass
class Cluster:
    """Three nodes rendered from deploy/nats/nats.conf, with the passwords of every role."""

    directory: Path
    passwords: dict[str, str] = field(default_factory=role_passwords)
    nodes: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        binary = find_nats_server()
        env = {password_variable(role): pw for role, pw in self.passwords.items()}
        ports = [(free_port(), free_port(), free_port()) for _ in NODES]
        template = (DEPLOY_NATS / "nats.conf").read_text()
        for name, (client, monitor, cluster) in zip(NODES, ports, strict=True):
            directory = self.directory / name
            directory.mkdir(parents=True)
            shutil.copy(DEPLOY_NATS / "accounts.conf", directory / "accounts.conf")
            replacements = {
                "listen: 0.0.0.0:4222": f"listen: 127.0.0.1:{client}",
                "http: 0.0.0.0:8222": f"http: 127.0.0.1:{monitor}",
                "listen: 0.0.0.0:6222": f"listen: 127.0.0.1:{cluster}",
                "store_dir: /data/jetstream": f"store_dir: {directory / 'store'}",
            }
            for other, (_, _, route) in zip(NODES, ports, strict=True):
                replacements[f"nats://{other}:6222"] = f"nats://127.0.0.1:{route}"
            (directory / "nats.conf").write_text(render(template, replacements))
            self.nodes.append(Node(name, directory, client, monitor, cluster, env, binary))

    def settings(self, role: str, **changes: Any) -> Settings:
        """Agora's settings (as the AGORA_* variables of deploy/ give them) for ``role``."""
        return Settings(
            nats_url=",".join(self.urls),
            nats_user=role,
            nats_password=self.passwords[role],
            nats_inbox_prefix=inbox_prefix(role),
            stream_replicas=3,
            **changes,
        )

    @property
    def urls(self) -> list[str]:
        """Every node's client URL."""
        return [n.url for n in self.nodes]

    def node(self, name: str) -> Node:
        """The node called ``name`` (the server name JetStream reports)."""
        return next(n for n in self.nodes if n.name == name)

    def start(self, timeout: float = 30.0) -> None:
        """Start every node and wait until each is healthy."""
        for node in self.nodes:
            node.start()
        self.wait_healthy(self.nodes, timeout)

    def wait_healthy(self, nodes: list[Node], timeout: float = 30.0) -> None:
        """Poll until ``nodes`` answer their health checks; raise with their logs if not."""
        deadline = time.monotonic() + timeout
        while not all(n.healthy() for n in nodes):
            for n in nodes:
                if n.process is not None and n.process.poll() is not None:
                    raise AssertionError(f"{n.name} exited: {self.tail(n)}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    "cluster not healthy: " + "; ".join(self.tail(n) for n in nodes)
                )
            time.sleep(0.05)

    def tail(self, node: Node) -> str:
        """The end of a node's log, for failure messages."""
        with contextlib.suppress(OSError):
            return f"{node.name}: " + node.log.read_text(errors="replace")[-1500:]
        return f"{node.name}: no log"

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()


async def init_stream(cluster: Cluster, timeout: float = 30.0) -> None:
    """``agora stream init`` as the admin: AGORA with 3 replicas (polls for the meta leader)."""
    deadline = time.monotonic() + timeout
    async with Stack(cluster.settings("admin")) as stack:
        while True:
            try:
                result = await stack.ensure_stream()
            except AgoraError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)  # no JetStream meta leader elected yet: poll
                continue
            assert result.info.config.num_replicas == 3
            return
