"""Sizes in the config are read without importing dask (0.13-0.19 s of every `plan`), in the
syntax dask's ``parse_bytes`` reads: the two agree on every size below. Stricter than dask where
dask reads a unit with no number as one of it (``parse_bytes("MB") == 1_000_000``,
``parse_bytes("") == 1``): a config that says ``partition_bytes: MB`` is a mistake to name."""

from __future__ import annotations

import pytest
from dask.utils import parse_bytes

from shardsmith.errors import ConfigError
from shardsmith.ir.sizes import parse_size

SIZES = ["128MB", "128 MB", "1GiB", "1gib", "64mb", "1.5kB", " 2 KiB ", "10e3", "3e2MB", ".5GB", "5.",
         "100", "1b", "7TB", "2PiB", "1kib", "12345", 4096, 1.5e6]
NOT_SIZES = ["", "MB", "abc", "12 parsecs", "1..5MB", "-3MB", "0", "0MB", "1e40PB", True]


@pytest.mark.parametrize("text", SIZES, ids=str)
def test_sizes_read_as_dask_reads_them(text):
    assert parse_size(text, "k") == int(parse_bytes(text))


@pytest.mark.parametrize("text", NOT_SIZES, ids=str)
def test_what_is_not_a_positive_size_is_one_error_naming_the_key(text):
    with pytest.raises(ConfigError) as err:
        parse_size(text, "engine.partition_bytes")
    assert "engine.partition_bytes" in str(err.value)
