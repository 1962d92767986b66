"""Timing and memory probes, benchmark runner and tables."""
