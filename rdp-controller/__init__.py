"""Lucid RDP controller: RDP session controller and connection broker."""

__version__ = "1.0.0"
