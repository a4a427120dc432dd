"""Model artifacts: a content-addressed store and the built-in model set."""
