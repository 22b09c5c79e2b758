"""Persistence: MongoDB repositories (source of truth) and Redis coordination."""
