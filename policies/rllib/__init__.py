"""``coral train --engine rllib``: RLlib PPO (new API stack) on the retrieval environment (optional extra).

Modules, one job each: :mod:`.env` registers the environment with Tune, :mod:`.metrics` turns
RLlib results into the SB3 path's CSV columns, :mod:`.policy` loads a trained RLModule as a
:class:`~coral.policies.base.RetrievalPolicy` (what ``coral evaluate`` runs), :mod:`.train`
builds, trains, checkpoints and resumes the Algorithm. Only this file is imported without Ray.
"""

from __future__ import annotations

from coral.errors import CoralError

#: The Ray release the extra pins (``pip install -e .[rllib]``).
RAY_VERSION = "2.60.0"


def require_rllib() -> None:
    """Check that Ray RLlib can be imported.

    :raises CoralError: one line telling the user how to install it.
    """
    try:
        import ray.rllib  # noqa: F401
        import ray.tune  # noqa: F401
    except ImportError as err:
        raise CoralError(f"--engine rllib needs Ray RLlib ({err}); install it with: pip install -e .[rllib]") from None
