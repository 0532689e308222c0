"""Store: the durable queue between ingest and processing (jobs, states, payload files)."""
