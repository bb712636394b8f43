from __future__ import annotations

from pathlib import Path

import pytest

from agora.config import load_settings
from agora.embedded import EmbeddedNats, StoreInUse, running_url
from agora.stack import Stack


def test_a_restart_after_a_kill_listens_on_the_same_port(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats")
    url = server.start()
    try:
        server.kill()
        assert not server.running
        assert server.start() == url
    finally:
        server.stop()


def test_a_second_server_on_the_same_store_is_refused_and_names_the_first(tmp_path: Path) -> None:
    with EmbeddedNats(tmp_path / "nats") as first:
        with pytest.raises(StoreInUse) as refused:
            EmbeddedNats(tmp_path / "nats").start()
        assert refused.value.url == first.url
        assert running_url(tmp_path / "nats") == first.url
    assert running_url(tmp_path / "nats") is None
    with EmbeddedNats(tmp_path / "nats"):  # free again once the first stopped
        pass


async def test_a_second_command_attaches_to_the_running_embedded_server(tmp_path: Path) -> None:
    settings = load_settings({"AGORA_DATA_DIR": str(tmp_path)})
    async with Stack(settings) as owner, Stack(settings) as other:
        assert owner.server is not None
        assert other.server is None
        assert other.nats_url == owner.nats_url
        created = await other.ensure_stream()
        assert created.created
        assert not (await owner.ensure_stream()).created
