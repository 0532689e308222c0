"""dmask's tests: unit tests per module here, real peers in ``integration``, helpers in ``support``.

A package, so that the benchmarks (``python -m bench.mask``) import the same helpers the tests
use, ``from tests.support import ...``, without editing ``sys.path``.
"""
