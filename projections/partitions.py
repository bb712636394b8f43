"""Partitioning by community: which partition of N folds a community's events."""

from __future__ import annotations

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


def fnv1a_32(data: bytes) -> int:
    """The 32-bit FNV-1a hash, the one nats-server's ``{{partition(n, ...)}}`` transform uses."""
    h = _FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return h


def partition_of(community: str, partitions: int) -> int:
    """The partition (0..partitions-1) of a community; stable across processes and versions."""
    if partitions == 1:
        return 0
    return fnv1a_32(community.encode()) % partitions


def community_of_subject(subject: str) -> str:
    """The community token of an event subject ``agora.<community>.<type>``."""
    return subject.split(".", 2)[1]
