"""uvicorn's body high-water mark is raised by `genexfer serve` (app.flow)."""

from __future__ import annotations

from uvicorn.protocols.http import flow_control, h11_impl, httptools_impl

from app.flow import set_body_high_water


def test_the_high_water_mark_is_set_everywhere_uvicorn_reads_it() -> None:
    before = httptools_impl.HIGH_WATER_LIMIT
    try:
        assert not set_body_high_water(0)
        assert before == httptools_impl.HIGH_WATER_LIMIT
        assert set_body_high_water(1 << 20)
        for module in (flow_control, h11_impl, httptools_impl):
            assert module.HIGH_WATER_LIMIT == 1 << 20
    finally:
        for module in (flow_control, h11_impl, httptools_impl):
            module.HIGH_WATER_LIMIT = before
