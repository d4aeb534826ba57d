"""Helpers for starting real servers in tests, benchmarks and the demo (not a product code path)."""
