"""Ingest: the DICOM listener that admits instances from known callers into the spool."""
