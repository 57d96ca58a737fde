"""The stages a model goes through: static, venv, and docker once per serving target (registry.py)."""
