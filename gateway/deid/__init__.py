"""Attribute de-identification: PS3.15 Annex E applied from the standard's own table."""
