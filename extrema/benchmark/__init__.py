"""Benchmark helpers: analytic FLOP counts, side-by-side timing, the timed steps."""
