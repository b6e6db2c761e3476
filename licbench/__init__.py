"""licbench: learned image compression methods and classic codecs behind one codec contract."""

__version__ = "0.1.0"
