"""Planning through any world model (``hw.WorldModel``): trajectory optimisation, MPC, benchmark.

``optimize_trajectory(world, task)`` shoots over the task's action sequence (Adam / L-BFGS with
gradients through the world model, or CEM sampling); ``MPC(world, task)`` re-plans at every
control step with warm starts; ``bench_plan()`` compares the methods at equal wall time.
"""
from .bench import bench_plan, plan_table
from .mpc import MPC, run_mpc_mujoco, scaled_mass_model
from .optimize import OPTIMIZERS, PlanResult, optimize_trajectory

__all__ = ["MPC", "OPTIMIZERS", "PlanResult", "bench_plan", "optimize_trajectory", "plan_table", "run_mpc_mujoco",
           "scaled_mass_model"]
