"""The error root of the edge package (configuration, embedded stack, CLI)."""

from __future__ import annotations


class AgoraError(Exception):
    """Root of every error raised by the ``agora`` package."""


class ConfigError(AgoraError):
    """An ``AGORA_*`` variable is missing or malformed; the message names it."""


class NatsServerError(AgoraError):
    """The embedded nats-server could not be found, started or stopped."""


class StreamConfigMismatch(AgoraError):
    """The stream exists with a configuration other than the one asked for; nothing was changed."""

    def __init__(self, differences: dict[str, tuple[object, object]]) -> None:
        lines = ", ".join(
            f"{k}: has {have!r}, want {want!r}" for k, (have, want) in differences.items()
        )
        super().__init__(f"stream exists with a different configuration ({lines})")
        self.differences = differences
