"""Data: verified archives, the synthetic generator, dataset parsers, open-reid splits and the image store."""
