"""Measurement: latency, complexity, end-to-end throughput, memory, per-phase times, environment, matmul peak."""
