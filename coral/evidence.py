"""One piece of collaborative evidence: an observed training interaction put into a prompt."""

from __future__ import annotations

from typing import NamedTuple


class Evidence(NamedTuple):
    """A retrieved (user, item, like/dislike) triple, with dataset integer ids."""

    user: int
    item: int
    label: int
    """1 = the user liked the item, 0 = disliked."""
