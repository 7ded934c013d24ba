"""transform REST handlers."""
