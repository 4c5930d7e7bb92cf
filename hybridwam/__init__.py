"""hybridwam: a differentiable hybrid world model (Warp rigid-body physics + PyTorch residual)."""
from .calibration import CalibrationReport, calibrate
from .hybrid import HybridModel, WorldModel
from .logs import LogError, Logs, load_logs
from .model import Model, ModelLoadError, UnsupportedFeatureError, list_scenes, load_model
from .physics import CapturedRollout, NonFiniteError, Physics, Trajectory
from .planning import MPC, PlanResult, bench_plan, optimize_trajectory, run_mpc_mujoco, scaled_mass_model
from .residual import Residual
from .tasks import Task, list_tasks

__version__ = "0.1.0"


def __getattr__(name):
    # the Gymnasium environments need the optional extra "gym"; import them on first use
    if name in ("HybridWamEnv", "HybridWamVecEnv", "make_vec_env"):
        from . import envs

        return getattr(envs, name)
    raise AttributeError(f"module 'hybridwam' has no attribute {name!r}")


__all__ = [
    "MPC", "CalibrationReport", "CapturedRollout", "HybridModel", "LogError", "Logs", "Model", "ModelLoadError",
    "NonFiniteError", "Physics", "PlanResult", "Residual", "Task", "Trajectory", "UnsupportedFeatureError",
    "WorldModel", "bench_plan", "calibrate", "list_scenes", "list_tasks", "load_logs", "load_model",
    "optimize_trajectory", "run_mpc_mujoco", "scaled_mass_model",
]
