"""provision component."""
