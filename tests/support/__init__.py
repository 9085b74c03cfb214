"""What the tests share: test modules import it from here, never from one another.

Fixtures live in tests/conftest.py; everything else two test modules need (a
daemon the test controls, a byte-level client, the walk-through's seed, a test
PKI, what must not change across a refusal, the suite's random seed) lives in a
module of this package named after what it is.
"""
