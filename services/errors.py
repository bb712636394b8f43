"""The error root of the ``services`` package and its few subclasses."""

from __future__ import annotations


class ServiceError(Exception):
    """Root of every error raised by the ``services`` package."""


class SourceError(ServiceError):
    """An import source (a dump directory, a file in it) is missing or malformed."""


class InvalidSetting(ServiceError, ValueError):
    """An argument of a service is out of range or malformed; nothing was done."""
