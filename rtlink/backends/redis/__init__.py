"""The Redis engine: several server processes (or machines) act as one.

``redis://host:port/db``, ``rediss://``, ``unix://``, ``redis+sentinel://`` or
``redis+cluster://`` (see :mod:`.topology`; needs the ``redis`` extra:
``pip install 'rtlink[redis]'``).

* **History** lives in a Redis list per channel, one ``"<ms> <offset> <data>"`` entry
  per publication, bounded by the channel's size (exact ``LTRIM``) and TTL (entries too
  old leave from the head at each publish, a key expiry, and a TTL check on read). A
  list, not a stream: a stream's first node preallocates 4 KB in Redis 7.
* **Positions** come from a hash per channel holding the epoch and the latest offset.
  One Lua script assigns the offset, appends to the history, de-duplicates by
  idempotency key and publishes, atomically: two nodes can never hand out the same
  position, and a publication is in history before any node delivers it.
* **Fan-out** goes through Redis pub/sub. A node subscribes a channel in Redis only
  while it has local subscribers (the hub reference-counts; this backend subscribes
  once per channel, and keeps it a few seconds after the last one left) and all of a
  node's subscriptions share one pub/sub connection of its own, never one of the
  command pool (on a cluster: one per master, with sharded pub/sub; see
  :mod:`.cluster`). Subscribes go in batches, and the node then knows each live
  channel's top: a subscribe without ``since`` costs no history read.
* **A broker blip loses nothing**: when that connection drops, the node reconnects with
  full-jitter backoff, subscribes every channel again in batches, reads their tops in
  batches and history only where a channel moved on, buffering live messages
  meanwhile, and logs one summary line. When a gap cannot be filled (Redis restarted
  without persistence, history trimmed), it calls the ``on_lost`` listener: the hub
  then asks the channel's clients to reconnect, and they learn ``recovered = false``.

Key layout (``prefix`` defaults to ``rtlink``; ``{channel}`` is a Redis Cluster hash
tag, so all keys of one channel share a slot — channel names cannot contain braces)::

    rtlink:{chat:lobby}:meta        hash   e = epoch, o = latest offset, r = run id of
                                           the Redis process that wrote e, p = the
                                           epoch before (after a restart or failover)
    rtlink:{chat:lobby}:log         list   "<ms> <offset> <msgpack data>" per kept
                                           publication, oldest first
    rtlink:{chat:lobby}:key:<key>   string "<epoch> <offset>" of an idempotency key
    rtlink:{chat:lobby}:pub         pub/sub channel: "<epoch> <offset> <data>" (a shard
                                           channel on a cluster)
    rtlink:claim:<key>              string "1" while <key> is claimed (single-use tickets)

Data is stored and published as msgpack. Requires Redis 6.2 or newer.

The parts: :mod:`.scripts` (the Lua that runs inside Redis, and why an epoch changes),
:mod:`.topology` (URLs and clients), :mod:`.link` (the pub/sub connection, read by a
protocol), :mod:`.feed` (the node's channels on that link and their catch-up),
:mod:`.reads` (history reads in batches, bounded), :mod:`.cluster` (the links to a
cluster's masters, following moved slots), :mod:`.errors` (what is temporary),
:mod:`.backend` (the Backend itself), :mod:`.sharded` (channels spread over
independent Redis servers).
"""

from .backend import RedisBackend
from .sharded import ShardedRedisBackend

__all__ = ["RedisBackend", "ShardedRedisBackend"]
