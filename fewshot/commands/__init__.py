"""One module a CLI verb."""
