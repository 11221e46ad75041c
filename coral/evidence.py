"""One piece of collaborative evidence: an observed training interaction put into a prompt."""

from __future__ import annotations

from typing import NamedTuple

#: K, the number of retrieval rounds (pieces of evidence in a prompt at the end of an evaluation
#: episode; the paper's 5): the one default of every ``rounds`` setting.
ROUNDS = 5


class Evidence(NamedTuple):
    """A retrieved (user, item, like/dislike) triple, with dataset integer ids."""

    user: int
    item: int
    label: int
    """1 = the user liked the item, 0 = disliked."""
