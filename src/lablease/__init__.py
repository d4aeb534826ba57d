"""lablease: lend cloud test nodes to a test lab."""

__version__ = "0.1.0"
