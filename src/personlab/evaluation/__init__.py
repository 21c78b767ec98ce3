"""Evaluation: re-ID ranking metrics, re-ranking, and pictures."""
