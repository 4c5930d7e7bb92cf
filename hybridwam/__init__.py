"""hybridwam: a differentiable hybrid world model (Warp rigid-body physics + PyTorch residual)."""
from .model import Model, ModelLoadError, UnsupportedFeatureError, list_scenes, load_model
from .physics import NonFiniteError, Physics, Trajectory

__version__ = "0.1.0"

__all__ = ["Model", "ModelLoadError", "NonFiniteError", "Physics", "Trajectory", "UnsupportedFeatureError",
           "list_scenes", "load_model"]
