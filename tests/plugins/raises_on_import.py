"""A user's op module with a bug that shows while it is imported (tests/test_bad_config.py)."""

RATE = 1 / 0
