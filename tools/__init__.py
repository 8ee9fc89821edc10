"""Operator tools that drive the Pulumi program (run them as modules: `python -m tools.<name>`)."""
