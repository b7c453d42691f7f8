"""Benchmarks of docs/benchmarks.md. Run them all with `make bench` (python -m bench)."""
