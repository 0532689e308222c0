"""Codecs: pixel frames of every supported transfer syntax, and video streams."""
