"""rtlink's runnable examples: ``bash examples/run.sh NAME`` (see examples/README.md)."""
