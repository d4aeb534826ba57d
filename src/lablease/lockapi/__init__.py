"""lockapi component."""
