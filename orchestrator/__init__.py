"""edgebench controller: planning, dispatch, ingest, persistence, CLI."""
