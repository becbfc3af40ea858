"""Benchmarks: absl apps that print one JSON object as their last line."""
