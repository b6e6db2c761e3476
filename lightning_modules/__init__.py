"""Learned compression methods, one file each, on the shared base in ``base.py``."""
