"""`python -m agora.cli ...` runs the ``agora`` command line."""

from agora.cli import main

main()
