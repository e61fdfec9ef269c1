"""Benchmarks: each ``bench_<area>.py`` defines ``run() -> dict``; figures land as JSON."""
