"""The classifier plugin package."""
