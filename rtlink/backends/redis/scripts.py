"""The Lua scripts of the Redis engine: each runs atomically inside Redis.

``PUBLISH`` assigns the position, appends to history, de-duplicates by idempotency key
and publishes; ``HISTORY`` reads the gaps of many channels since their positions (the
reads of a storm go in batches, see :mod:`.reads`); ``TOPS`` reads the latest position
of many channels at once (a node catching up after a reconnection reads
history only where a channel moved on). All begin with ``EPOCH``, which decides a
channel's epoch (see its comment: why a restart or a failover of Redis starts a new one).

History is a list per channel (``RPUSH``, trimmed from the head), one entry per kept
publication: ``"<ms> <offset> <data>"``, where ``ms`` is Redis's clock when it was
published. A stream would do the same work, but Redis 7 preallocates 4 KB for a
stream's first node: a channel with one publication in a stream took 4,752 bytes of
memory, in a list about 200 (see docs/operations.md, "Sizing Redis").
"""

from __future__ import annotations

__all__ = ["EPOCH", "PUBLISH", "SHARDED_PUBLISH", "HISTORY", "TOPS", "PRESENCE_UPDATE",
           "PRESENCE_REMOVE", "PRESENCE_READ", "sharded"]

# Every script begins here: epoch_of(meta, log, new_epoch, write) is a channel's epoch
# and top offset, and a new epoch whenever positions may have been lost. A channel's
# meta hash records (field r) the run id of the Redis process that wrote its epoch.
# Every process has a new run id: a restart (which may have lost the writes since the
# last fsync or snapshot) and a failover (a promoted replica may lack the old master's
# last writes, which some node may already have delivered) both show as a run id that
# differs from the one recorded. The channel then gets a new epoch at the first script
# that touches it; its offsets and history carry on (a publication made with a key in
# the previous epoch, field p, is found again). So no position is ever reused within
# an epoch, and a client resuming from before the change is told recovered=false:
# never a silent gap, at the price of a re-sync after every restart or failover, even
# one that happened to lose nothing (nothing here can tell them apart). INFO costs
# about 3 us inside the script, once per script however many channels it reads.
EPOCH = """
local run_id = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
-- write(...) runs a write command: redis.call in PUBLISH and HISTORY; in TOPS one that
-- answers false where writes are refused (a read-only replica), and epoch_of then
-- answers what is recorded (false for a channel without one).
local function epoch_of(meta, log, new_epoch, write)
  local current = redis.call('HMGET', meta, 'e', 'o', 'r')
  local epoch, top = current[1], tonumber(current[2])
  if not epoch then
    if not write('HSET', meta, 'e', new_epoch, 'o', 0, 'r', run_id) then
      return false, 0
    end
    write('DEL', log)
    return new_epoch, 0
  end
  if current[3] ~= run_id and write('HSET', meta, 'e', new_epoch, 'p', epoch, 'r', run_id)
      then
    return new_epoch, top
  end
  return epoch, top
end
"""

# KEYS: meta, log, idempotency key (absent without a key)
# ARGV: new epoch, data, size, ttl ms, key ttl ms, meta ttl ms, pub/sub channel
# Returns {epoch, offset, duplicate 0/1}.
PUBLISH = EPOCH + """
local meta, log = KEYS[1], KEYS[2]
local epoch = epoch_of(meta, log, ARGV[1], redis.call)
local meta_ttl = ARGV[6]
if KEYS[3] then
  local seen = redis.call('GET', KEYS[3])
  local space = seen and string.find(seen, ' ', 1, true)
  if space then
    -- Offsets carried on from the previous epoch, so its keys still point at their
    -- publications. Keys of any other epoch belong to a history that is gone.
    local seen_epoch = string.sub(seen, 1, space - 1)
    local seen_offset = tonumber(string.sub(seen, space + 1))
    if seen_epoch ~= epoch and seen_epoch == redis.call('HGET', meta, 'p') then
      redis.call('SET', KEYS[3], epoch .. ' ' .. seen_offset, 'KEEPTTL')
      seen_epoch = epoch
    end
    if seen_epoch == epoch then
      redis.call('PEXPIRE', meta, meta_ttl)
      return {epoch, seen_offset, 1}
    end
  end
end
local offset = redis.call('HINCRBY', meta, 'o', 1)
local size, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
if size > 0 and ttl > 0 then
  local now = redis.call('TIME')
  local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  redis.call('RPUSH', log, ms .. ' ' .. offset .. ' ' .. ARGV[2])
  redis.call('LTRIM', log, -size, -1)
  -- Entries older than the TTL leave from the head, the oldest end: one LINDEX per
  -- publish once nothing is too old.
  while true do
    local head = redis.call('LINDEX', log, 0)
    if not head or tonumber(string.sub(head, 1, string.find(head, ' ', 1, true) - 1))
        > ms - ttl then
      break
    end
    redis.call('LPOP', log)
  end
  redis.call('PEXPIRE', log, ttl)
end
local key_ttl = tonumber(ARGV[5])
if KEYS[3] and key_ttl > 0 then
  redis.call('SET', KEYS[3], epoch .. ' ' .. offset, 'PX', key_ttl)
end
redis.call('PEXPIRE', meta, meta_ttl)
redis.call('PUBLISH', ARGV[7], epoch .. ' ' .. offset .. ' ' .. ARGV[2])
return {epoch, offset, 0}
"""

# The same on Redis Cluster: SPUBLISH reaches only the shard that owns the channel's
# slot (the pub/sub channel shares the keys' hash tag), where PUBLISH would be sent
# over the cluster bus to every node.
SHARDED_PUBLISH = PUBLISH.replace("redis.call('PUBLISH', ", "redis.call('SPUBLISH', ")
assert SHARDED_PUBLISH != PUBLISH

# KEYS: meta, log of channel 1, meta, log of channel 2, ... (one slot on a cluster)
# ARGV: a random token (channel i's new epoch, if it needs one, is the first 8 hex
#       digits of SHA1(token .. i)), then for each channel: since epoch ('' for
#       none), since offset, size, ttl ms (0: no TTL check), meta ttl ms
# Returns for each channel in turn {epoch, top offset, recovered 0/1, count, data...}:
# the data of offsets since+1 .. top, oldest first, when recovered (count of them).
HISTORY = EPOCH + """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local result = {}
-- The entries since+1 .. top of a log, or nil when they are not all there.
local function gap(log, epoch, top, since_epoch, since, size, ttl)
  if since_epoch == '' or (since_epoch == epoch and since == top) then
    return {}
  end
  local wanted = top - since
  if since_epoch ~= epoch or wanted < 0 or wanted > size then
    return nil
  end
  -- Offsets in the log only grow, and its newest entry is at most the top: the last
  -- `wanted` entries are exactly since+1 .. top when there are that many and the
  -- oldest of them is since+1.
  local entries = redis.call('LRANGE', log, -wanted, -1)
  if #entries < wanted then
    return nil
  end
  local oldest = entries[1]
  local first = string.find(oldest, ' ', 1, true)
  local second = string.find(oldest, ' ', first + 1, true)
  if tonumber(string.sub(oldest, first + 1, second - 1)) ~= since + 1 then
    return nil
  end
  if ttl > 0 and tonumber(string.sub(oldest, 1, first - 1)) <= now_ms - ttl then
    return nil
  end
  return entries
end
for c = 1, #KEYS / 2 do
  local meta, log, a = KEYS[2 * c - 1], KEYS[2 * c], 2 + (c - 1) * 5
  local epoch, top = epoch_of(meta, log, string.sub(redis.sha1hex(ARGV[1] .. c), 1, 8),
                              redis.call)
  redis.call('PEXPIRE', meta, ARGV[a + 4])
  local entries = gap(log, epoch, top, ARGV[a], tonumber(ARGV[a + 1]),
                      tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]))
  result[#result + 1] = epoch
  result[#result + 1] = top
  result[#result + 1] = entries and 1 or 0
  result[#result + 1] = entries and #entries or 0
  for i = 1, (entries and #entries or 0) do
    local entry = entries[i]
    local space = string.find(entry, ' ', string.find(entry, ' ', 1, true) + 1, true)
    result[#result + 1] = string.sub(entry, space + 1)
  end
end
return result
"""

# KEYS: meta, log of channel 1, meta, log of channel 2, ... (one slot on a cluster)
# ARGV: meta ttl ms, a random token (channel i's new epoch, if it needs one, is the
#       first 8 hex digits of SHA1(token .. i))
# Returns {epoch 1, top 1, epoch 2, top 2, ...}. The meta hash of a channel is created
# as HISTORY would (an empty channel is at offset 0 of its epoch) and its TTL is
# extended, never shortened (a publish may have set a longer one). On a read-only
# replica nothing is written: a channel without a meta hash answers a null epoch.
TOPS = EPOCH + """
local function write(...)
  local reply = redis.pcall(...)
  return not (type(reply) == 'table' and reply.err)
end
local meta_ttl = tonumber(ARGV[1])
local result = {}
for i = 1, #KEYS, 2 do
  local epoch, top = epoch_of(KEYS[i], KEYS[i + 1],
                              string.sub(redis.sha1hex(ARGV[2] .. i), 1, 8), write)
  if epoch and redis.call('PTTL', KEYS[i]) < meta_ttl then
    write('PEXPIRE', KEYS[i], meta_ttl)
  end
  result[#result + 1] = epoch
  result[#result + 1] = top
end
return result
"""

# Presence of a channel: a hash (member key -> member JSON) and a sorted set (member
# key -> expiry, Redis's clock in ms), both hash-tagged with the channel. Each script
# first removes the members whose expiry has passed: the script that removes an
# entry is the one that announces its leave, so each is announced exactly once, by
# whichever node runs it first. Changes are published on the channel's pub/sub
# channel as "!<count>" then a line per change, "+<member>" (join) or "-<member>"
# (leave); no publication begins with "!" (they begin with the epoch).
PRESENCE_SWEEP = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local hash, zset = KEYS[1], KEYS[2]
local changes = {}
for _, key in ipairs(redis.call('ZRANGEBYSCORE', zset, '-inf', now_ms)) do
  local member = redis.call('HGET', hash, key)
  redis.call('ZREM', zset, key)
  redis.call('HDEL', hash, key)
  if member then changes[#changes + 1] = '-' .. member end
end
local function announce(pub_channel)
  if #changes > 0 then
    redis.call('PUBLISH', pub_channel,
               '!' .. redis.call('HLEN', hash) .. '\\n' .. table.concat(changes, '\\n'))
  end
end
"""

# KEYS: members hash, expiry sorted set
# ARGV: ttl ms, pub/sub channel, keys' ttl ms, then key 1, member 1, key 2, member 2...
# Adds or refreshes the members (expiring ttl ms from now); announces the new ones.
PRESENCE_UPDATE = PRESENCE_SWEEP + """
local expires = now_ms + tonumber(ARGV[1])
for i = 4, #ARGV, 2 do
  if redis.call('ZADD', zset, expires, ARGV[i]) == 1 then
    changes[#changes + 1] = '+' .. ARGV[i + 1]
  end
  redis.call('HSET', hash, ARGV[i], ARGV[i + 1])
end
announce(ARGV[2])
if redis.call('HLEN', hash) > 0 then
  redis.call('PEXPIRE', hash, ARGV[3])
  redis.call('PEXPIRE', zset, ARGV[3])
end
return #changes
"""

# KEYS: members hash, expiry sorted set
# ARGV: pub/sub channel, then the keys of the members to remove
PRESENCE_REMOVE = PRESENCE_SWEEP + """
for i = 2, #ARGV do
  local member = redis.call('HGET', hash, ARGV[i])
  if member then
    redis.call('ZREM', zset, ARGV[i])
    redis.call('HDEL', hash, ARGV[i])
    changes[#changes + 1] = '-' .. member
  end
end
announce(ARGV[1])
return #changes
"""

# KEYS: members hash, expiry sorted set
# ARGV: pub/sub channel, limit
# Returns {count, member...}: at most limit members (all when there are no more).
PRESENCE_READ = PRESENCE_SWEEP + """
announce(ARGV[1])
local count = redis.call('HLEN', hash)
local limit = tonumber(ARGV[2])
local result = {count}
local members
if count <= limit then
  members = redis.call('HVALS', hash)
else
  members = redis.call('HRANDFIELD', hash, limit, 'WITHVALUES')
  local values = {}
  for i = 2, #members, 2 do values[#values + 1] = members[i] end
  members = values
end
for _, member in ipairs(members) do result[#result + 1] = member end
return result
"""


def sharded(script: str) -> str:
    """``script`` for Redis Cluster: ``SPUBLISH`` reaches only the shard that owns the
    channel's slot (see :data:`SHARDED_PUBLISH`)."""
    changed = script.replace("redis.call('PUBLISH', ", "redis.call('SPUBLISH', ")
    if changed == script:
        raise ValueError("the script publishes nothing")
    return changed
