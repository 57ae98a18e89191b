"""One backbone a file; each registers itself with `register_backbone`."""
