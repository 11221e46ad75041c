"""A trained RLlib RLModule as a coral :class:`~coral.policies.base.RetrievalPolicy` (deterministic).

Loads the module (and the observation filter it was trained behind) from a directory, with no
Ray cluster and no env runners, so ``coral evaluate`` runs an RLlib policy through the same
:func:`coral.policies.evaluate.evaluate_policy` as an SB3 one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

#: Inside an Algorithm checkpoint (``algo.save``): the single-agent RLModule and the MeanStdFilter state.
ALGO_MODULE = Path("learner_group") / "learner" / "rl_module" / "default_policy"
ALGO_OBS_FILTER = Path("env_runner") / "env_to_module_connector" / "MeanStdFilter"
#: Inside a run's ``rllib_model/``: the same two, copied out of the final checkpoint.
MODULE = "module"
OBS_FILTER = "obs_filter"


def policy_parts(directory: Path) -> tuple[Path, Path | None]:
    """(module dir, observation filter dir or None) of an Algorithm checkpoint or an ``rllib_model/``."""
    directory = Path(directory)
    module, obs_filter = (
        (directory / ALGO_MODULE, directory / ALGO_OBS_FILTER)
        if (directory / ALGO_MODULE).is_dir()
        else (directory / MODULE, directory / OBS_FILTER)
    )
    return module, obs_filter if obs_filter.is_dir() else None


def load_obs_filter(directory: Path | None, observation_space: Any) -> Any | None:
    """The saved MeanStdFilter connector as a frozen ``ray.rllib.utils.filter.MeanStdFilter`` (None: none saved).

    :param directory: the connector's checkpoint directory.
    :param observation_space: the observations' space (its shape sizes the filter).
    """
    if directory is None:
        return None
    from ray.rllib.connectors.env_to_module import MeanStdFilter as MeanStdConnector

    # The connector's saved constructor arguments lack the space it was built with: set it (after
    # construction: RLlib 2.60's constructor reads the space before it has set up the filter).
    connector = MeanStdConnector()
    connector.input_observation_space = observation_space
    connector.restore_from_path(str(directory))
    return frozen_obs_filter(connector.get_state())


def frozen_obs_filter(connector_state: dict[Any, Any]) -> Any:
    """A ``ray.rllib.utils.filter.MeanStdFilter`` holding a MeanStdFilter connector's statistics (applied with
    ``update=False``).

    :param connector_state: the connector's ``get_state()``: {agent id: filter state}.
    """
    from ray.rllib.utils.filter import MeanStdFilter, RunningStat

    (state,) = connector_state.values()  # single agent
    obs_filter = MeanStdFilter(
        state["shape"], demean=state["de_mean_to_zero"], destd=state["de_std_to_one"], clip=state["clip_by_value"]
    )
    (stats,) = state["running_stats"]  # one Box observation
    obs_filter.running_stats = RunningStat.from_state(stats)
    return obs_filter


def load_rllib_policy(directory: str | Path, name: str = "rllib_ppo") -> "RLlibPolicy":
    """The policy saved in an Algorithm checkpoint or a run's ``rllib_model/``.

    :param directory: the checkpoint or model directory.
    :param name: the policy's name in result rows.
    """
    from ray.rllib.core.rl_module.rl_module import RLModule

    module_dir, filter_dir = policy_parts(Path(directory))
    module = RLModule.from_checkpoint(str(module_dir))
    return RLlibPolicy(module, name=name, obs_filter=load_obs_filter(filter_dir, module.observation_space))


class RLlibPolicy:
    """Deterministic actions of an RLlib PPO module: the mean of its action distribution, mapped
    onto the action space as RLlib's env runners do (``normalize_actions=True``: clip to [-1, 1], rescale).

    :param module: a torch RLModule.
    :param name: the policy's name in result rows.
    :param obs_filter: the observation filter of training (frozen), or None.
    """

    needs_embeddings = True

    def __init__(self, module: Any, name: str = "rllib_ppo", obs_filter: Any | None = None) -> None:
        self.module = module
        self.name = name
        self.obs_filter = obs_filter

    @torch.inference_mode()
    def act(self, observations: np.ndarray, envs: Sequence[Any] = ()) -> np.ndarray:
        """Actions for a batch of observations (one row per environment).

        :param observations: (n, obs_dim) float32.
        :param envs: unused (a learned policy reads observations only).
        """
        from ray.rllib.core.columns import Columns
        from ray.rllib.utils.spaces.space_utils import unsquash_action

        obs = np.asarray(observations, dtype=np.float32)
        if self.obs_filter is not None:
            obs = self.obs_filter(obs, update=False)
        out = self.module.forward_inference({Columns.OBS: torch.as_tensor(obs)})
        dist = self.module.get_inference_action_dist_cls().from_logits(out[Columns.ACTION_DIST_INPUTS])
        actions = dist.to_deterministic().sample().cpu().numpy()
        space = self.module.action_space
        if hasattr(space, "low"):  # a Box
            actions = np.stack([unsquash_action(np.clip(a, -1.0, 1.0), space) for a in actions]).astype(space.dtype)
        return actions
