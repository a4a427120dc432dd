"""Hardware probes. Each takes a root path, so tests can point it at a recorded tree."""
