"""The network plugin package."""
