"""mlgrid: a self-hosted event grid for the machine-learning lifecycle."""

__version__ = "0.1.0"
