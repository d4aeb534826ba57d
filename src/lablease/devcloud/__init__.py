"""devcloud component."""
