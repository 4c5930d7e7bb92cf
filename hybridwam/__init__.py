"""hybridwam: a differentiable hybrid world model (Warp rigid-body physics + PyTorch residual)."""
from .calibration import CalibrationReport, calibrate
from .calibration.checkpoint import ResumeError
from .calibration.core import OutputExistsError
from .codegen import KernelCacheError
from .hybrid import CheckpointError, HybridModel, ResidualOutputError, WorldModel
from .logs import LogError, Logs, load_logs
from .model import Model, ModelLoadError, UnsupportedFeatureError, list_scenes, load_model
from .physics import CapturedRollout, NonFiniteError, Physics, Trajectory
from .planning import MPC, PlanResult, bench_plan, optimize_trajectory, run_mpc_mujoco, scaled_mass_model
from .residual import Residual
from .tasks import Task, list_tasks

__version__ = "0.1.0"


def _register_gymnasium_envs(gym=None) -> dict[str, str]:
    """Register every shipped task's Gymnasium id ("hybridwam/CartpoleSwingup-v0", ...) when
    gymnasium is installed, as Gymnasium 1.x plugins do on import (``import hybridwam;
    gym.register_envs(hybridwam)``, like ale_py and gymnasium_robotics). The entry points are
    strings ("hybridwam.envs:HybridWamEnv"), so the env module loads only on the first
    ``gym.make`` / ``gym.make_vec``. Idempotent; returns {task name: id} ({} without gymnasium)."""
    if gym is None:
        try:
            import gymnasium as gym
        except ImportError:  # the optional "gym" extra is not installed
            return {}
    from .tasks import env_id

    ids = {}
    for name in list_tasks():
        eid = env_id(name)
        if eid not in gym.registry:
            gym.register(id=eid, entry_point="hybridwam.envs:HybridWamEnv",
                         vector_entry_point="hybridwam.envs:HybridWamVecEnv", kwargs={"task": name})
        ids[name] = eid
    return ids


try:
    _register_gymnasium_envs()
except Exception as _e:  # a broken gymnasium must not break hybridwam itself
    import warnings

    warnings.warn(f"hybridwam: Gymnasium ids not registered ({type(_e).__name__}: {_e})", stacklevel=2)


def __getattr__(name):
    # the Gymnasium environments need the optional extra "gym"; import them on first use
    if name in ("HybridWamEnv", "HybridWamVecEnv", "make_vec_env"):
        from . import envs

        return getattr(envs, name)
    raise AttributeError(f"module 'hybridwam' has no attribute {name!r}")


__all__ = [
    "MPC", "CalibrationReport", "CapturedRollout", "CheckpointError", "HybridModel", "KernelCacheError", "LogError",
    "Logs", "Model", "ModelLoadError", "NonFiniteError", "OutputExistsError", "Physics", "PlanResult", "Residual",
    "ResidualOutputError", "ResumeError", "Task", "Trajectory", "UnsupportedFeatureError",
    "WorldModel", "bench_plan", "calibrate", "list_scenes", "list_tasks", "load_logs", "load_model",
    "optimize_trajectory", "run_mpc_mujoco", "scaled_mass_model",
]
