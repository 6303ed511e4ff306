"""Tables and summaries written from a run directory."""
