"""uvicorn's flow control, sized for request bodies of many megabytes.

uvicorn pauses reading a connection as soon as 64 KiB of its request body wait unread and
resumes when the app asks for more, so a 57 MB body reached the app as ~900 messages, each a
trip through the event loop and every ASGI middleware's receive wrapper, then a copy and a join.
With a larger high-water mark the body arrives in few large messages; each connection may buffer
up to that much before it is paused (back-pressure still applies beyond it).
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def set_body_high_water(limit_bytes: int) -> bool:
    """Set uvicorn's per-connection body buffer (0: leave uvicorn's 64 KiB); True when set."""
    if limit_bytes <= 0:
        return False
    try:
        from uvicorn.protocols.http import flow_control, h11_impl, httptools_impl
    except ImportError:  # another uvicorn layout: its own limit stays
        log.warning("uvicorn's flow control not found; request bodies keep its 64 KiB chunks")
        return False
    for module in (flow_control, h11_impl, httptools_impl):
        if hasattr(module, "HIGH_WATER_LIMIT"):
            setattr(module, "HIGH_WATER_LIMIT", limit_bytes)  # noqa: B010 (a module constant)
    return True
