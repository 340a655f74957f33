"""ttgen: an open implementation of Terminal-Task-Gen (terminal-agent training data)."""

__version__ = "0.1.0"
