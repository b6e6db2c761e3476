"""Hydra configuration tree (a package so that installed copies can find it)."""
