"""Adapters for what Conveyor sends out: HTTP notifications."""
