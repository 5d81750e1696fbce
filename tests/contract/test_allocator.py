"""malloc tuning for `genexfer serve`: applied on glibc, skipped when turned off."""

from __future__ import annotations

import platform
import sys

import pytest

from app.config import Settings
from contract.allocator import keep_freed_memory


def test_zero_keeps_the_c_library_defaults() -> None:
    assert keep_freed_memory(0) is False


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="mallopt is glibc's",
)
def test_glibc_takes_the_tuning() -> None:
    assert keep_freed_memory(Settings(_env_file=None).malloc_trim_threshold_mb) is True  # type: ignore[call-arg]
