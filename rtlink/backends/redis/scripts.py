"""The Lua scripts of the Redis engine: each runs atomically inside Redis.

``PUBLISH`` assigns the position, appends to history, de-duplicates by idempotency key
and publishes; ``HISTORY`` reads the gaps of many channels since their positions, or
pages of what they keep (the reads of a storm go in batches, see :mod:`.reads`);
``TOPS`` reads the latest position of many channels at once (a node catching up after
a reconnection reads history only where a channel moved on). All begin with
``EPOCH``, which decides a channel's epoch (see its comment: why a restart or a
failover of Redis starts a new one).

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
-- Entries of a log published at or before `cutoff` (ms) leave from its head, the
-- oldest end (PUBLISH as it appends, HISTORY before it reads a page).
local function expire_head(log, cutoff)
  while true do
    local head = redis.call('LINDEX', log, 0)
    if not head or tonumber(string.sub(head, 1, string.find(head, ' ', 1, true) - 1))
        > cutoff then
      return
    end
    redis.call('LPOP', log)
  end
end
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
  -- One LINDEX per publish once nothing is too old.
  expire_head(log, ms - ttl)
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
#       none), since offset, size, ttl ms (0: no TTL check), meta ttl ms, limit, mode
# A read with limit 0 is a gap: the data of offsets since+1 .. top when they are all
# kept (recovered), else nothing. A read with a limit is, by mode (reads.py), a page
# (0 forward, 1 reverse: Backend.page): at most limit kept entries after since (or
# from the oldest kept), or before since (or up to the newest), and whether since was
# honoured (recovered); or (2: Backend.replay) the gap, and when it cannot be filled
# the latest limit kept entries (not recovered).
# Returns for each channel in turn {epoch, top offset, recovered 0/1, count, then
# count times: offset, data}, oldest first.
HISTORY = EPOCH + """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local result = {}
-- The offset of a log entry, and where its data begins.
local function offset_of(entry)
  local first = string.find(entry, ' ', 1, true)
  local second = string.find(entry, ' ', first + 1, true)
  return tonumber(string.sub(entry, first + 1, second - 1)), second + 1
end
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
  if offset_of(oldest) ~= since + 1 then
    return nil
  end
  if ttl > 0 and tonumber(string.sub(oldest, 1, string.find(oldest, ' ', 1, true) - 1))
      <= now_ms - ttl then
    return nil
  end
  return entries
end
-- A window of the kept entries of a log (rtlink.backends.base.page_bounds says which),
-- and whether since was honoured.
local function page(log, epoch, top, since_epoch, since, ttl, limit, reverse)
  if ttl > 0 then
    expire_head(log, now_ms - ttl)
  end
  local n = redis.call('LLEN', log)
  local oldest, newest = top + 1, top
  if n > 0 then
    oldest = offset_of(redis.call('LINDEX', log, 0))
    newest = offset_of(redis.call('LINDEX', log, -1))
  end
  local known = since_epoch == epoch and since <= top
  local first, last, recovered
  if reverse then
    last = newest
    if known and since - 1 < newest then
      last = since - 1
    end
    first = math.max(oldest, last - limit + 1)
    recovered = since_epoch == '' or known
  else
    if known and since + 1 >= oldest then
      first, recovered = since + 1, true
    else
      first, recovered = oldest, since_epoch == ''
    end
    last = math.min(newest, first + limit - 1)
  end
  if n == 0 or last < first then
    return {}, recovered
  end
  if newest - oldest + 1 == n then  -- consecutive offsets: the window by index
    return redis.call('LRANGE', log, first - oldest, last - oldest), recovered
  end
  -- Holes (the channel's policy changed in between): read all, keep the window.
  local entries = {}
  for _, entry in ipairs(redis.call('LRANGE', log, 0, -1)) do
    local offset = offset_of(entry)
    if offset >= first and offset <= last then
      entries[#entries + 1] = entry
    end
  end
  return entries, recovered
end
for c = 1, #KEYS / 2 do
  local meta, log, a = KEYS[2 * c - 1], KEYS[2 * c], 2 + (c - 1) * 7
  local epoch, top = epoch_of(meta, log, string.sub(redis.sha1hex(ARGV[1] .. c), 1, 8),
                              redis.call)
  redis.call('PEXPIRE', meta, ARGV[a + 4])
  local limit, mode = tonumber(ARGV[a + 5]), ARGV[a + 6]
  local entries, recovered
  if limit == 0 or mode == '2' then
    entries = gap(log, epoch, top, ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]),
                  tonumber(ARGV[a + 3]))
    recovered = entries ~= nil
    if not entries and limit > 0 then
      entries = page(log, epoch, top, '', 0, tonumber(ARGV[a + 3]), limit, true)
    end
  else
    entries, recovered = page(log, epoch, top, ARGV[a], tonumber(ARGV[a + 1]),
                              tonumber(ARGV[a + 3]), limit, mode == '1')
  end
  entries = entries or {}
  result[#result + 1] = epoch
  result[#result + 1] = top
  result[#result + 1] = recovered and 1 or 0
  result[#result + 1] = #entries
  for i = 1, #entries do
    local offset, data = offset_of(entries[i])
    result[#result + 1] = offset
    result[#result + 1] = string.sub(entries[i], data)
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
