"""Settings from ``AGORA_*`` variables: defaults, parsing, refusals and masking."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from agora.config import Settings, env_name, get_settings, load_settings, sources
from agora.errors import AgoraError, ConfigError

#: A valid value for every variable, and what it parses to.
VALID: dict[str, tuple[str, Any]] = {
    "data_dir": ("/var/lib/agora", Path("/var/lib/agora")),
    "nats_url": ("nats://n1:4222,nats://n2:4222", "nats://n1:4222,nats://n2:4222"),
    "nats_user": ("agora", "agora"),
    "nats_password": ("s3cret", "s3cret"),
    "nats_token": ("t0ken", "t0ken"),
    "nats_creds": ("/etc/agora/agora.creds", Path("/etc/agora/agora.creds")),
    "nats_inbox_prefix": ("_INBOX_worker", "_INBOX_worker"),
    "nats_server_bin": ("/usr/local/bin/nats-server", Path("/usr/local/bin/nats-server")),
    "database_url": ("postgresql+psycopg://agora@db/agora", "postgresql+psycopg://agora@db/agora"),
    "read_database_url": (
        "postgresql+psycopg://agora_read@db/agora",
        "postgresql+psycopg://agora_read@db/agora",
    ),
    "stream_replicas": ("3", 3),
    "stream_duplicate_window": ("300", 300.0),
    "stream_max_age": ("86400.5", 86400.5),
    "stream_max_bytes": ("1073741824", 1073741824),
    "publish_timeout": ("2.5", 2.5),
    "publish_deadline": ("20", 20.0),
    "publish_max_in_flight": ("512", 512),
    "publish_max_future_skew": ("60", 60.0),
    "ingest_tokens": ("/etc/agora/ingest-tokens.json", "/etc/agora/ingest-tokens.json"),
    "ingest_max_body_bytes": ("65536", 65536),
    "ingest_max_batch": ("100", 100),
    "http_header_timeout": ("2.5", 2.5),
    "http_body_timeout": ("60", 60.0),
    "http_keep_alive_timeout": ("0.5", 0.5),
    "http_max_connections": ("64", 64),
    "moderator_tokens": ("mod1@c1=s3cret-token", "mod1@c1=s3cret-token"),
    "id_key": ("k" * 32, "k" * 32),
    "demo_data": ("/srv/dumps/beer", Path("/srv/dumps/beer")),
    "log_format": ("json", "json"),
    "log_level": ("debug", "debug"),
}

MALFORMED: dict[str, str] = {
    "nats_inbox_prefix": "_INBOX_worker.>",
    "stream_replicas": "three",
    "stream_duplicate_window": "2m",
    "stream_max_age": "-1",
    "stream_max_bytes": "-2",
    "publish_timeout": "0",
    "publish_deadline": "soon",
    "publish_max_in_flight": "0",
    "publish_max_future_skew": "86401",
    "ingest_max_body_bytes": "1",
    "ingest_max_batch": "0",
    "http_header_timeout": "0",
    "http_body_timeout": "-1",
    "http_keep_alive_timeout": "forever",
    "http_max_connections": "0",
    "id_key": "too-short",
    "log_format": "xml",
    "log_level": "DEBUGGING",
}


def test_defaults_with_an_empty_environment() -> None:
    settings = load_settings({})
    assert settings == Settings()
    assert settings.data_dir == Path(".agora")
    assert settings.nats_url is None
    assert settings.embedded_nats
    assert settings.stream_replicas == 1
    assert settings.stream_duplicate_window == 120.0
    assert settings.stream_max_age == 0.0
    assert settings.stream_max_bytes == -1
    assert settings.publish_timeout == 5.0
    assert settings.publish_deadline == 30.0
    assert settings.publish_max_in_flight == 4096
    assert settings.publish_max_future_skew == 300.0
    assert (settings.ingest_max_body_bytes, settings.ingest_max_batch) == (1_048_576, 500)
    assert (settings.log_format, settings.log_level) == ("auto", "info")
    assert settings.effective_database_url == (
        f"sqlite:///{(Path('.agora') / 'agora.db').resolve()}"
    )


def test_every_setting_is_covered_here() -> None:
    assert set(VALID) == set(Settings.__struct_fields__)


@pytest.mark.parametrize("field", list(VALID))
def test_every_variable_parses(field: str) -> None:
    text, expected = VALID[field]
    settings = load_settings({env_name(field): text})
    assert getattr(settings, field) == expected


def test_all_variables_together() -> None:
    settings = load_settings({env_name(field): text for field, (text, _) in VALID.items()})
    assert {field: getattr(settings, field) for field in VALID} == {
        field: expected for field, (_, expected) in VALID.items()
    }
    assert not settings.embedded_nats
    assert settings.effective_database_url == "postgresql+psycopg://agora@db/agora"


def test_variable_names() -> None:
    assert env_name("stream_duplicate_window") == "AGORA_STREAM_DUPLICATE_WINDOW"


def test_an_empty_value_means_unset() -> None:
    assert load_settings({"AGORA_STREAM_REPLICAS": "", "AGORA_NATS_URL": ""}) == Settings()


def test_sources_name_the_variable_or_default() -> None:
    environ = {"AGORA_STREAM_REPLICAS": "3", "AGORA_NATS_URL": ""}
    assert sources(environ) == {
        field: "AGORA_STREAM_REPLICAS" if field == "stream_replicas" else "default"
        for field in Settings.__struct_fields__
    }


@pytest.mark.parametrize(("field", "text"), list(MALFORMED.items()))
def test_a_malformed_value_names_its_variable(field: str, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({env_name(field): text})
    message = str(info.value)
    assert message.startswith(f"{env_name(field)}: ")
    assert " - at " not in message


def test_config_errors_are_agora_errors() -> None:
    assert issubclass(ConfigError, AgoraError)


def test_an_unknown_variable_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"AGORA_STREAM_REPLICA": "3"})  # a typo
    message = str(info.value)
    assert message.startswith("AGORA_STREAM_REPLICA is not an Agora setting")
    assert "AGORA_STREAM_REPLICAS" in message


def test_test_variables_and_other_prefixes_are_ignored() -> None:
    environ = {
        "AGORA_TEST_POSTGRES_URL": "postgresql://x",
        "AGORA_TEST_ANYTHING": "1",
        "PATH": "/usr/bin",
        "NATS_URL": "nats://elsewhere:4222",
        "agora_nats_url": "nats://lower-case:4222",
    }
    assert load_settings(environ) == Settings()


def test_secrets_have_no_defaults() -> None:
    fields = {f.name: f for f in msgspec.structs.fields(Settings)}
    for name in ("nats_password", "nats_token"):
        assert fields[name].default is None
        assert fields[name].default_factory is msgspec.NODEFAULT


def test_masked_hides_secrets_and_url_passwords() -> None:
    settings = load_settings(
        {
            "AGORA_NATS_URL": "nats://agora:pw1@n1:4222,nats://n2:4222,tls://u:pw2@n3:4443",
            "AGORA_NATS_USER": "agora",
            "AGORA_NATS_PASSWORD": "s3cret",
            "AGORA_NATS_TOKEN": "t0ken",
            "AGORA_DATABASE_URL": "postgresql+psycopg://agora:dbpass@db:5432/agora",
        }
    )
    masked = settings.masked()
    text = repr(masked)
    for secret in ("s3cret", "t0ken", "pw1", "pw2", "dbpass"):
        assert secret not in text
    assert masked["nats_password"] == masked["nats_token"] == "***"
    assert masked["nats_user"] == "agora"
    assert masked["nats_url"] == "nats://agora:***@n1:4222,nats://n2:4222,tls://u:***@n3:4443"
    assert masked["database_url"] == "postgresql+psycopg://agora:***@db:5432/agora"
    assert masked["database_url (effective)"] == masked["database_url"]


def test_masked_lists_every_setting_as_printable_values() -> None:
    masked = load_settings({}).masked()
    assert set(Settings.__struct_fields__) <= set(masked)
    assert masked["nats_password"] is None  # unset secrets stay visibly unset
    assert masked["data_dir"] == ".agora"
    assert masked["database_url (effective)"].startswith("sqlite:///")
    msgspec.json.encode(masked)  # printable: plain JSON types only


def test_get_settings_reads_the_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    monkeypatch.setenv("AGORA_STREAM_REPLICAS", "2")
    try:
        assert get_settings().stream_replicas == 2
        monkeypatch.setenv("AGORA_STREAM_REPLICAS", "3")
        assert get_settings() is get_settings()
        assert get_settings().stream_replicas == 2
    finally:
        get_settings.cache_clear()


def test_a_publish_deadline_past_the_dedupe_window_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"AGORA_PUBLISH_DEADLINE .* shorter than"):
        load_settings({"AGORA_PUBLISH_DEADLINE": "90", "AGORA_STREAM_DUPLICATE_WINDOW": "60"})
    assert load_settings({"AGORA_STREAM_DUPLICATE_WINDOW": "60"}).publish_deadline == 30.0
