"""One CPU thread for small fits, counted: overlapping fits (jobs in threads) restore the
process's settings once, when the last ends, and large models keep theirs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from threadpoolctl import threadpool_info

from training.nn.device import SMALL_MODEL_GENES, cpu_threads_for


@pytest.fixture(autouse=True)
def two_torch_threads() -> Iterator[None]:
    original = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(original)


def _blas() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_overlapping_small_fits_restore_the_settings_once() -> None:
    before = _blas()
    first, second = cpu_threads_for(100), cpu_threads_for(100)
    first.__enter__()
    second.__enter__()
    assert (torch.get_num_threads(), _blas()) == (1, {1})
    first.__exit__(None, None, None)  # the first job ends while the second still fits
    assert (torch.get_num_threads(), _blas()) == (1, {1})
    second.__exit__(None, None, None)
    assert (torch.get_num_threads(), _blas()) == (2, before)


def test_a_large_model_keeps_every_thread() -> None:
    with cpu_threads_for(SMALL_MODEL_GENES + 1):
        assert torch.get_num_threads() == 2
