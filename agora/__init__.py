"""The edge of Agora: configuration, the embedded stack and the ``agora`` command line.

Nothing in ``events``, ``projections`` or ``services`` imports this package.
"""
