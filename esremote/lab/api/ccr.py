"""ccr REST handlers."""
