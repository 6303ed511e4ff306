"""Learning: the training loop, evaluation and analysis, data-parallel helpers and weight loading."""
