"""Measurement: latency, complexity, environment."""
