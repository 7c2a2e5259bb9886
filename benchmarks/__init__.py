"""Latency, real-time factor and conversion-quality benchmarks."""
