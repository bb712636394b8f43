"""Reputation: explainable points per member under a versioned rule set, and trust levels.

``Reputation`` folds with Agora's default rules (tables ``reputation_*``),
``StackExchangeReputation`` with Stack Exchange's 2014 rules (tables
``reputation_stackexchange_*``); :func:`projection_for` makes one for any other
:class:`RuleSet`. See docs/reputation.md.
"""

from projections.reputation.projection import (
    FOLD_REVISION,
    Reputation,
    ReputationProjection,
    StackExchangeReputation,
    Tables,
    projection_for,
    projection_name,
    version_of,
)
from projections.reputation.rules import (
    DEFAULT,
    RULE_SETS,
    STACKEXCHANGE,
    ReactionRule,
    RuleSet,
    TrustLevel,
    fingerprint,
)
from projections.reputation.trust import Standing, trust_level

__all__ = [
    "DEFAULT",
    "FOLD_REVISION",
    "RULE_SETS",
    "STACKEXCHANGE",
    "ReactionRule",
    "Reputation",
    "ReputationProjection",
    "RuleSet",
    "StackExchangeReputation",
    "Standing",
    "Tables",
    "TrustLevel",
    "fingerprint",
    "projection_for",
    "projection_name",
    "trust_level",
    "version_of",
]
