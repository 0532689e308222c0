"""Benchmarks that print figures; run each as a module from the repository root
(``python -m bench.mask``), so that it imports ``gateway`` and ``tests.support`` as installed
and checked out."""
