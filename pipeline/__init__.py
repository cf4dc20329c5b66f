"""Orchestration: the Hydra entry (`python -m pipeline`), the iteration loop, the artifact store, tracking."""
