"""labkit: real-time messaging the way Slack does it, small enough to read and run in a notebook."""

__version__ = "0.1.0"
