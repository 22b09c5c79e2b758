"""Integration clients for the peer Lucid services."""
