"""MJCF scenes shipped with hybridwam (installed as hybridwam.scenes)."""
