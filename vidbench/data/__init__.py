"""Decoding, sampling, transforms and loading of video clips."""
