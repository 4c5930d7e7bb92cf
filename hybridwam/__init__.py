"""hybridwam: a differentiable hybrid world model (Warp rigid-body physics + PyTorch residual)."""
from .model import Model, ModelLoadError, UnsupportedFeatureError, list_scenes, load_model
from .hybrid import HybridModel, WorldModel
from .physics import NonFiniteError, Physics, Trajectory
from .residual import Residual

__version__ = "0.1.0"

__all__ = ["HybridModel", "Model", "Residual", "WorldModel", "ModelLoadError", "NonFiniteError", "Physics", "Trajectory", "UnsupportedFeatureError",
           "list_scenes", "load_model"]
