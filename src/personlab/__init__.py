"""personlab: a reproducible DVC pipeline for person re-identification and multi-view 3D pose."""

__version__ = "0.1.0"
