"""Upload sample ids that look like numbers stay the text the lab wrote (issue 15, point 3)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from app.codecs.datasets import read_table

IDS = ["001", "1e5", "12", "-0", "1.50", "0x1A", "+7", "1E5", "00", "3.0e-2", "010"]


def table(sep: str, ids: list[str]) -> bytes:
    lines = [sep.join(["sample", "CD3E", "CD14", "cell_type"])]
    lines += [sep.join([s, str(i), f"{i}.5", "T" if i % 2 else "B"]) for i, s in enumerate(ids)]
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize(
    ("fmt", "filename", "sep", "zipped"),
    [("csv", "x.csv", ",", False), ("tsv", "x.tsv", "\t", False), ("csv", "x.csv.gz", ",", True)],
)
def test_ids_that_look_like_numbers_stay_strings(
    fmt: str, filename: str, sep: str, zipped: bool
) -> None:
    data = table(sep, IDS)
    got = read_table(
        gzip.compress(data) if zipped else data, fmt, filename, None, max_values=1 << 20
    )
    assert got.sample_ids == IDS
    assert all(type(s) is str for s in got.sample_ids)
    assert got.gene_ids == ["CD3E", "CD14"]
    assert got.X.dtype == np.float32
    assert got.X[:, 0].tolist() == list(range(len(IDS)))
    assert got.labels == {"cell_type": ["T" if i % 2 else "B" for i in range(len(IDS))]}


def test_ids_that_look_like_numbers_past_the_sniffed_rows_stay_strings() -> None:
    ids = [f"s{i}" for i in range(20)] + IDS  # the sniff sees text ids only
    got = read_table(table(",", ids), "csv", "x.csv", ["cell_type"], max_values=1 << 20)
    assert got.sample_ids == ids
