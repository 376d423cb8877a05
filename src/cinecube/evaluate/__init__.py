"""Evaluation: prompt adherence and metrics."""
