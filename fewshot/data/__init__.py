"""Raw public formats in, one prepared store out."""
