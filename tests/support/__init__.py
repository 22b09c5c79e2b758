"""Helpers shared by the test tiers (server launchers, fixtures that are not pytest fixtures)."""
