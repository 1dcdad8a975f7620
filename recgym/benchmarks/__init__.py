"""Benchmark runner, suites, CLI and performance scripts (the top layer: may import everything below)."""
