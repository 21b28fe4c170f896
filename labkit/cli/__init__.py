"""labkit's command line: ``labkit serve | gateway | token | chat | lab | grade | chaos |
bench``."""

from labkit.cli.main import main

__all__ = ["main"]
