"""Trainer plugins: how a model job learns (supervised, distillation, self-supervised pre-training)."""
