"""Shared modules for every Lucid container: logging, errors, backends, the embedded dev stack."""
