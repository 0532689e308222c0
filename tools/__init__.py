"""Offline builders of the package data: the Annex E table, the mask template, the eye calibration."""
