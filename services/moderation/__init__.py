"""The moderation service: decisions in; ``moderation.decided`` and ``content.hidden`` out.

* :mod:`services.moderation.decisions` validates a decision against the moderation queue and
  publishes it (HTTP: :mod:`services.moderation.http`; NATS request-reply:
  :mod:`services.moderation.messaging`);
* :mod:`services.moderation.reactor` publishes ``content.hidden`` for items the queue's auto-hide
  rule marked, exactly once per crossing.

What the service reads of the moderation queue it asks through the small protocols of
:mod:`services.moderation.readside`; the edge (``agora/moderation_wiring.py``) implements them over
the projection's tables. See docs/services.md.
"""
