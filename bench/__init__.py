"""Benchmarks that print tables and write bench/results/*.json and .md (not tests)."""
