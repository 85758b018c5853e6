"""Trending-papers newsletter: feeds in, one well-made email per reader out."""

__version__ = "0.1.0"
