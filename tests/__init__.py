"""vidbench tests."""
