"""YAML configs shipped with hybridwam (installed as hybridwam.configs)."""
