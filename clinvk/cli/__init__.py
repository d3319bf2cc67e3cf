"""The command-line edge of clinvk: click commands that translate into engine calls."""

from clinvk.cli.app import main

__all__ = ["main"]
