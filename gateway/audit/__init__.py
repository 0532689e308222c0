"""Audits of what leaves the gateway: attribute leaks and face re-identification."""
