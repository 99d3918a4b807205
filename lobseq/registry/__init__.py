"""Model registry: the `champion` alias, promotion decisions, list/promote/rollback.

The public verbs live in `aliases` (who is champion, and moving it) and
`champion` (whether a challenger wins); they are re-exported here.
"""

from lobseq.registry.aliases import (
    CHAMPION,
    HISTORY_TAG,
    PREVIOUS,
    champion_version,
    client,
    list_versions,
    promote,
    registry_lock,
    rollback,
    version_by_alias,
)
from lobseq.registry.champion import (
    Decision,
    PromoteConfig,
    PromotionRule,
    champion_challenger,
    ci_of,
    decide,
    gate_check,
    register,
    score_of,
)

__all__ = ["CHAMPION", "HISTORY_TAG", "PREVIOUS", "Decision", "PromoteConfig", "PromotionRule",
           "champion_challenger", "champion_version", "ci_of", "client", "decide", "gate_check",
           "list_versions", "promote", "register", "registry_lock", "rollback", "score_of",
           "version_by_alias"]
