"""Process: route, mask, scrub and encode each spooled instance, in worker processes."""
