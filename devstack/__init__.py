"""Local development stack support: a fake provider upstream for tests, `make run` and benchmarks."""
