"""Save and restore the complete state of the training envs, for a checkpoint that resumes a run
bit for bit.

gymnasium's MuJoCo envs pickle through ``EzPickle``, which rebuilds an env from its constructor
arguments and drops its simulator state, so a plain pickle of an env does not resume it. Here
every layer of each sub-env is saved on its own:

* every wrapper layer (``TimeLimit``'s step counter, ``OrderEnforcing``'s reset flag, the env
  checker's flags) and the base env itself: all attributes except the wrapped env, the MuJoCo
  model (constant) and the renderer, pickled, which takes the env's ``np_random`` and the
  spaces' generators with them;
* MuJoCo's ``MjData``: the whole struct, derived quantities and solver warm start included,
  copied back into the env's own ``MjData`` with ``mj_copyData``. The integration state alone
  (``mj_getState(mjSTATE_INTEGRATION)``) is not enough: Humanoid and Ant read positions that
  the last ``mj_step`` derived (the centre of mass before the step) and would compute another
  first reward after a restore (measured: the first reward differs, the observations do not).

Evaluation envs need none of this: every evaluation resets each of them from its own seed, which
resets MuJoCo's data completely, so their state is the count of evaluation episodes used.
"""

from __future__ import annotations

import pickle
import zlib
from typing import Any, cast

import gymnasium as gym
import mujoco

from .rollout import FinalObsInfoSyncVectorEnv

# MjData pickles to ~0.7 MB per env, mostly its preallocated arena of zeros; zlib at level 1
# cuts that twentyfold for ~3 ms per env (Hopper-v5, Humanoid-v5)
_COMPRESSION_LEVEL = 1


class EnvStateUnsupported(Exception):
    """The env's state cannot be saved (envpool, or an attribute that does not pickle)."""


def _sub_envs(vector_env: gym.vector.VectorEnv) -> list[gym.Env]:
    if not isinstance(vector_env, FinalObsInfoSyncVectorEnv):
        raise EnvStateUnsupported(f"{type(vector_env).__name__} cannot save its simulator state")
    return cast(gym.vector.SyncVectorEnv, vector_env.unwrapped).envs


def _layers(env: gym.Env) -> list[Any]:
    layers = [env]
    while isinstance(layers[-1], gym.Wrapper):
        layers.append(layers[-1].env)
    return layers


def _is_mujoco(value: Any, kind: str) -> bool:
    return type(value).__module__.startswith("mujoco") and type(value).__name__ == kind


def _layer_state(layer: Any) -> dict[str, Any]:
    plain, mjdata = {}, {}
    for key, value in vars(layer).items():
        if isinstance(value, gym.Env) or _is_mujoco(value, "MjModel") or key == "mujoco_renderer":
            continue  # the wrapped env has its own entry; the model is constant; rendering is not state
        if _is_mujoco(value, "MjData"):
            mjdata[key] = zlib.compress(pickle.dumps(value), _COMPRESSION_LEVEL)
        else:
            plain[key] = value
    try:
        return {"type": type(layer).__qualname__, "plain": pickle.dumps(plain), "mjdata": mjdata}
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise EnvStateUnsupported(f"{type(layer).__name__}: its state does not pickle ({exc})") from None


def capture_env_state(vector_env: gym.vector.VectorEnv) -> list[list[dict[str, Any]]]:
    """The state of every layer of every sub-env, as plain picklable data."""
    return [[_layer_state(layer) for layer in _layers(env)] for env in _sub_envs(vector_env)]


def restore_env_state(vector_env: gym.vector.VectorEnv, state: list[list[dict[str, Any]]]) -> None:
    """Put a captured state back into a freshly made vector env of the same id and size."""
    envs = _sub_envs(vector_env)
    if len(envs) != len(state):
        raise ValueError(f"the checkpoint holds {len(state)} envs, this vector env {len(envs)}")
    for env, env_state in zip(envs, state):
        layers = _layers(env)
        if [type(layer).__qualname__ for layer in layers] != [s["type"] for s in env_state]:
            raise ValueError("the checkpoint's env wrappers differ from this env's")
        for layer, layer_state in zip(layers, env_state):
            vars(layer).update(pickle.loads(layer_state["plain"]))
            model = getattr(layer, "model", None)
            for key, blob in layer_state["mjdata"].items():
                # into the env's own MjData, which the renderer and any views keep pointing to
                mujoco.mj_copyData(getattr(layer, key), model, pickle.loads(zlib.decompress(blob)))
