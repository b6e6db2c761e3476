"""Learned compression methods, one file each, on the shared base (``base.py``), layers
(``layers.py``) and entropy models with their rANS guards (``entropy.py``)."""
