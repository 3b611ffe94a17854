"""Kombu's Redis transport, with one Redis client per channel instead of one per command.

Kombu builds a new `redis.Redis` around the channel's connection pool for every command
it sends outside its consumer loop: each publish, and each receipt and acknowledgement
of a message (`acks_late`). redis-py fills a 170-entry case-insensitive table at every
construction (redis/redis-py#3624): under a profiler, the largest single cost in a
worker's Python time per job (docs/benchmarks.md). A client holds no connection of its own, only
the pool's, so one per channel serves every command the channel sends, as kombu's own
consumer client does.

For `redis://` only: kombu turns TLS on for `rediss://` by the transport's name, which
naming this class instead would lose. Past a failover to another URL of a `;` list,
kombu goes back to its own transport (slower, not wrong).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _shared: tuple[Any, Any] | None = None  # (pool, client)

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        pool = self.pool
        shared = self._shared
        # Kombu drops its pools after a fork and when it closes the channel: a client of
        # the old pool would send through connections that are gone.
        if shared is None or shared[0] is not pool:
            shared = self._shared = (pool, self._create_client())  # type: ignore[no-untyped-call]
        yield shared[1]


class _ShownAsRedis(type):
    # Kombu writes a connection's transport into its URL ("Connected to redis://…" in
    # the worker's log): a class would show as "<class '…'>".
    def __str__(cls) -> str:
        return "redis"


class Transport(kombu_redis.Transport, metaclass=_ShownAsRedis):
    Channel = Channel


SCHEME = "redis"
