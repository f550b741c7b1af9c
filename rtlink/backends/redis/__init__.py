"""The Redis engine: several server processes (or machines) act as one.

``redis://host:port/db``, ``rediss://``, ``unix://``, ``redis+sentinel://`` or
``redis+cluster://`` (see :mod:`.topology`; needs the ``redis`` extra:
``pip install 'rtlink[redis]'``).

* **History** lives in a Redis Stream per channel, bounded by the channel's size (exact
  ``MAXLEN``) and TTL (``MINID`` trimming plus a key expiry, and a TTL check on read).
* **Positions** come from a hash per channel holding the epoch and the latest offset.
  One Lua script assigns the offset, appends to the stream, de-duplicates by
  idempotency key and publishes, atomically: two nodes can never hand out the same
  position, and a publication is in history before any node delivers it.
* **Fan-out** goes through Redis pub/sub. A node subscribes a channel in Redis only
  while it has local subscribers (the hub reference-counts; this backend subscribes
  once per channel) and all of a node's subscriptions share one pub/sub connection
  (on a cluster: one per master, with sharded pub/sub; see :mod:`.cluster`).
* **A broker blip loses nothing**: when that connection drops, the node reconnects with
  full-jitter backoff, subscribes again, and reads every live channel's history from
  the last position it delivered, buffering live messages meanwhile. When the gap
  cannot be filled (Redis restarted without persistence, history trimmed), it calls
  the ``on_lost`` listener: the hub then asks the channel's clients to reconnect, and
  they learn ``recovered = false``.

Key layout (``prefix`` defaults to ``rtlink``; ``{channel}`` is a Redis Cluster hash
tag, so all keys of one channel share a slot — channel names cannot contain braces)::

    rtlink:{chat:lobby}:meta        hash   e = epoch, o = latest offset, r = run id of
                                           the Redis process that wrote e, p = the
                                           epoch before (after a restart or failover)
    rtlink:{chat:lobby}:history     stream entries (auto IDs) with o = offset, d = data
    rtlink:{chat:lobby}:key:<key>   string "<epoch> <offset>" of an idempotency key
    rtlink:{chat:lobby}:pub         pub/sub channel: "<epoch> <offset> <data>" (a shard
                                           channel on a cluster)
    rtlink:claim:<key>              string "1" while <key> is claimed (single-use tickets)

Data is stored and published as msgpack. Requires Redis 6.2 or newer.

The parts: :mod:`.scripts` (the Lua that runs inside Redis, and why an epoch changes),
:mod:`.topology` (URLs and clients), :mod:`.feed` (the pub/sub link and its catch-up),
:mod:`.cluster` (the links to a cluster's masters, following moved slots),
:mod:`.errors` (what is temporary), :mod:`.backend` (the Backend itself),
:mod:`.sharded` (channels spread over independent Redis servers).
"""

from .backend import RedisBackend
from .sharded import ShardedRedisBackend

__all__ = ["RedisBackend", "ShardedRedisBackend"]
