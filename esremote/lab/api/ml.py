"""ml REST handlers."""
