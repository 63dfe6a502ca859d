"""paas: push to GitHub, get a zero-downtime release behind nginx."""

__version__ = "0.2.0"
