"""DICOM plumbing shared by ingest and deliver: Part 10 layout, TCP and TLS transport."""
