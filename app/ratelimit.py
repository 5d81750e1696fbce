"""Per-key rate limits: a token bucket per API key, in Redis (shared by every replica) or in this
process.

A key may make `burst` requests at once, then `rate` per second on average; a request over it is
a 429 with Retry-After (the seconds until a token is back). In Redis the bucket is one hash per
key, updated by one Lua script (atomic, on the server's clock, so replicas with skewed clocks
agree); a Redis that does not answer does not take the service down: the process's own buckets
stand in until it is back (each replica then limits alone), and that is logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# KEYS[1]: the bucket; ARGV: rate per second, burst. Returns the seconds to wait (0: admitted),
# as a string: Lua numbers come back from Redis truncated to integers.
TAKE = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""
PREFIX = "genexfer:ratelimit:"
WARN_EVERY_S = 60.0


class RateLimiter(Protocol):
    async def take(self, key: str) -> float:
        """Take one token from `key`'s bucket: 0 if admitted, else the seconds until one is back."""

    async def close(self) -> None:
        """Release connections."""


class LocalBuckets:
    """Token buckets in this process (one event loop: no lock between read and write)."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate, self.burst, self.clock = rate, float(burst), clock
        self._buckets: dict[str, tuple[float, float]] = {}

    async def take(self, key: str) -> float:
        now = self.clock()
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - at) * self.rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1 - tokens) / self.rate

    async def close(self) -> None:
        return None


class RedisBuckets:
    """Token buckets in Redis, shared by every replica; this process's own while it is away."""

    def __init__(self, url: str, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.client = aioredis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self.script = self.client.register_script(TAKE)
        self.fallback = LocalBuckets(rate, burst)
        self._warned = -WARN_EVERY_S

    async def take(self, key: str) -> float:
        try:
            wait = await self.script(keys=[PREFIX + key], args=[self.rate, self.burst])
        except (RedisError, OSError) as exc:
            now = time.monotonic()
            if now - self._warned >= WARN_EVERY_S:
                self._warned = now
                log.warning("rate limits held in this process: Redis unavailable (%s)", exc)
            return await self.fallback.take(key)
        return float(wait)

    async def close(self) -> None:
        await self.client.aclose()


def make_limiter(rate: float, burst: int, redis_url: str | None) -> RateLimiter | None:
    """The limiter the settings ask for; None when `rate` is 0 (no limit)."""
    if rate <= 0:
        return None
    if redis_url:
        return RedisBuckets(redis_url, rate, burst)
    return LocalBuckets(rate, burst)
