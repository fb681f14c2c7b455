"""The `redis` revocation store: keys that expire with what they refuse."""

import math
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import redis

from revocation.base import (
    FAMILY,
    JTI,
    USER,
    Blocklist,
    Clock,
    revocation_store_unavailable,
)

# Set a numeric value unless the stored one is larger; (re)set the expiry.
_SET_MAX_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if current and tonumber(current) >= tonumber(ARGV[1]) then
  local ttl = redis.call('TTL', KEYS[1])
  if ttl < tonumber(ARGV[2]) then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


class _ThreadConnection(threading.local):
    """A Redis connection of one thread's own, made in the process that uses it."""

    connection: Any = None
    pid = 0


class RedisBlocklist(Blocklist):
    """Redis keys that expire with the remaining lifetime of what they refuse."""

    def __init__(
        self,
        client: Any,
        prefix: str = "blocklist:",
        clock: Clock = time.time,
        margin: float = 0,
    ) -> None:
        super().__init__(clock, margin)
        self._client = client
        self._prefix = prefix
        self._set_max = client.register_script(_SET_MAX_SCRIPT)
        self._own = _ThreadConnection()

    @contextmanager
    def _errors_as_unavailable(self) -> Iterator[None]:
        try:
            yield
        except redis.RedisError as exc:
            raise revocation_store_unavailable() from exc

    def _key(self, kind: str, key: str) -> str:
        return f"{self._prefix}{kind}:{key}"

    def _ttl(self, expires_at: float) -> int:
        return math.ceil(expires_at - self._clock())

    def _put(
        self, kind: str, key: str, value: Any, expires_at: float, keep_max: bool = False
    ) -> None:
        ttl = self._ttl(expires_at)
        if ttl <= 0:
            return
        with self._errors_as_unavailable():
            if keep_max:
                self._set_max(keys=[self._key(kind, key)], args=[repr(value), ttl])
            else:
                # Never shorten an entry: GT keeps the later of two expiries.
                pipe = self._client.pipeline()
                pipe.set(self._key(kind, key), value, nx=True, ex=ttl)
                pipe.expire(self._key(kind, key), ttl, gt=True)
                pipe.execute()

    def _put_new(self, kind: str, key: str, value: str, expires_at: float) -> bool:
        ttl = max(1, self._ttl(expires_at))
        with self._errors_as_unavailable():
            return bool(self._client.set(self._key(kind, key), value, nx=True, ex=ttl))

    def _get(self, kind: str, key: str) -> Any:
        with self._errors_as_unavailable():
            value = self._client.get(self._key(kind, key))
        return value.decode() if isinstance(value, bytes) else value

    def _lookup(
        self, jti: str, family: str | None, user_id: str
    ) -> tuple[bool, bool, float | None]:
        keys = [self._key(JTI, jti), self._key(USER, user_id)]
        if family is not None:
            keys.append(self._key(FAMILY, family))
        with self._errors_as_unavailable():
            values = self._read("MGET", *keys)
        family_revoked = family is not None and values[2] is not None
        mark = None if values[1] is None else float(values[1])
        return values[0] is not None, family_revoked, mark

    def _read(self, *command: str) -> Any:
        """Run a read-only command on this thread's own connection.

        The lookup runs on every request. redis-py's `Redis.execute_command` takes a
        connection from the pool and gives it back around each command, under its
        retry policy: with hiredis's parser, that bookkeeping was half of what the
        lookup cost a worker (docs/performance.md). Each thread keeps one connection
        instead, made after the fork (a worker never shares its parent's socket).

        A connection that fails or times out mid-command is closed by redis-py
        (`send_packed_command`, `read_response`), so a late reply is never read as
        the next command's; the next send opens a new one. The command only reads,
        so it is sent once more when the connection broke while idle (Redis
        restarted, a proxy closed it); a second failure, or a timeout, means the
        revocation store is down.
        """
        own = self._own
        if own.pid != os.getpid():
            # Made apart from the pool: each connection the pool makes counts
            # against its max_connections (100 in redis-py 8) for good, so
            # after 100 threads every new one would find the store down.
            pool = self._client.connection_pool
            own.connection = pool.connection_class(**pool.connection_kwargs)
            own.pid = os.getpid()
        for attempt in (1, 2):
            try:
                own.connection.send_command(*command)
                return own.connection.read_response()
            except redis.ConnectionError:
                if attempt == 2:
                    raise

    def purge_expired(self) -> int:
        return 0  # Redis expires the keys itself.

    def ping(self) -> None:
        with self._errors_as_unavailable():
            self._client.ping()


def redis_blocklist(config: Mapping[str, Any], margin: float) -> RedisBlocklist:
    """The app's `redis` revocation store, on REDIS_URL under REDIS_KEY_PREFIX (no
    connection is made until the first call)."""
    client = redis.Redis.from_url(
        config["REDIS_URL"],
        socket_timeout=config["REDIS_SOCKET_TIMEOUT"],
        socket_connect_timeout=config["REDIS_SOCKET_TIMEOUT"],
        health_check_interval=30,
    )
    return RedisBlocklist(
        client, prefix=config["REDIS_KEY_PREFIX"] + "blocklist:", margin=margin
    )
