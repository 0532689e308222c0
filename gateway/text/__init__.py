"""Burned-in text: find it with a text detector shipped in a wheel, fill it, verify the output.

A library like the mask: it takes RGB frames, attribute values and settings and returns results;
the pipeline decides when it runs (after the mask, on the whole output).
"""
