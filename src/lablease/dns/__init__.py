"""dns component."""
