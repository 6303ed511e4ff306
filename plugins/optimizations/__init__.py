"""Optimization plugins."""
