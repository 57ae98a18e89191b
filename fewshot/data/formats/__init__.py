"""One reader a public format; each module registers a DatasetFormat."""
