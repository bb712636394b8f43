"""The ``agora`` command line.

Exit codes: 0 ok; 1 operational failure (NATS or the database unreachable, events failed or
invalid, a paused projection partition or a parked community in ``status``, a refused
``activate``/``drop``, an interrupted build, dead letters still failing or a community parked
again...); 2 usage or configuration error (a malformed ``AGORA_*`` variable, a bad option, an
unknown projection, a community that is not parked); 3 the stream exists with another
configuration (nothing was changed; every difference is printed).

Human output goes to stdout, errors to stderr, logs (structlog) to stderr; ``--json`` puts one
JSON document on stdout instead of the human output.
"""

from __future__ import annotations

# Each command module registers its commands on `app` when imported; `--help` lists them in
# this order.
# isort: off
from agora.cli import stream  # noqa: F401 - registers
from agora.cli import contract  # noqa: F401 - registers
from agora.cli import run  # noqa: F401 - registers
from agora.cli import status  # noqa: F401 - registers
from agora.cli import build  # noqa: F401 - registers
from agora.cli import dlq  # noqa: F401 - registers
from agora.cli import importing  # noqa: F401 - registers

# isort: on
from agora.cli.common import app

__all__ = ["app", "main"]


def main() -> None:
    """Run the ``agora`` command line."""
    app(prog_name="agora")
