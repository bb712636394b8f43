"""The traffic simulator: realistic, deterministic community activity for the demo and for load.

:mod:`services.simulator.model` generates the events (a pure function of the seed and the event
times); :mod:`services.simulator.runner` publishes them at a configured rate. See docs/services.md.
"""
