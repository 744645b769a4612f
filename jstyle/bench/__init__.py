"""Benchmarks of jstyle against a PyTorch reference (needs the `bench` extra: torch, matplotlib)."""
