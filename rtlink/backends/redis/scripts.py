"""The Lua scripts of the Redis engine: each runs atomically inside Redis.

``PUBLISH`` assigns the position, appends to history, de-duplicates by idempotency key
and publishes; ``HISTORY`` reads a channel's gap since a position. Both begin with
``EPOCH``, which decides the channel's epoch (see its comment: why a restart or a
failover of Redis starts a new one).
"""

from __future__ import annotations

__all__ = ["EPOCH", "PUBLISH", "SHARDED_PUBLISH", "HISTORY"]

# Both scripts begin here: the channel's epoch, and a new one whenever positions may
# have been lost. A channel's meta hash records (field r) the run id of the Redis
# process that wrote its epoch. Every process has a new run id: a restart (which may
# have lost the writes since the last fsync or snapshot) and a failover (a promoted
# replica may lack the old master's last writes, which some node may already have
# delivered) both show as a run id that differs from the one recorded. The channel
# then gets a new epoch at the first script that touches it; its offsets and history
# carry on (a publication made with a key in the previous epoch, field p, is found
# again). So no position is ever reused within an epoch, and a client resuming from
# before the change is told recovered=false: never a silent gap, at the price of a
# re-sync after every restart or failover, even one that happened to lose nothing
# (nothing here can tell them apart). INFO costs about 3 us inside the script.
# KEYS[1], KEYS[2]: meta, history; ARGV[1]: a new epoch. Sets: epoch, top.
EPOCH = """
local meta, history = KEYS[1], KEYS[2]
local run_id = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
local current = redis.call('HMGET', meta, 'e', 'o', 'r')
local epoch, top = current[1], tonumber(current[2])
if not epoch then
  epoch, top = ARGV[1], 0
  redis.call('DEL', history)
  redis.call('HSET', meta, 'e', epoch, 'o', 0, 'r', run_id)
elseif current[3] ~= run_id then
  redis.call('HSET', meta, 'e', ARGV[1], 'p', epoch, 'r', run_id)
  epoch = ARGV[1]
end
"""

# KEYS: meta, history, idempotency key (absent without a key)
# ARGV: new epoch, data, size, ttl ms, key ttl ms, meta ttl ms, pub/sub channel
# Returns {epoch, offset, duplicate 0/1}.
PUBLISH = EPOCH + """
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
  local id = redis.call('XADD', history, 'MAXLEN', size, '*', 'o', offset, 'd', ARGV[2])
  local ms = tonumber(string.sub(id, 1, string.find(id, '-', 1, true) - 1))
  redis.call('XTRIM', history, 'MINID', ms - ttl + 1)
  redis.call('PEXPIRE', history, ttl)
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

# KEYS: meta, history
# ARGV: new epoch, since epoch ('' for none), since offset, size, ttl ms (0: no TTL
#       check), meta ttl ms
# Returns {epoch, top offset, recovered 0/1, data...}: the data of offsets
# since+1 .. top, oldest first, when recovered.
HISTORY = EPOCH + """
redis.call('PEXPIRE', meta, ARGV[6])
local since_epoch, since = ARGV[2], tonumber(ARGV[3])
if since_epoch == '' or (since_epoch == epoch and since == top) then
  return {epoch, top, 1}
end
local wanted = top - since
if since_epoch ~= epoch or wanted < 0 or wanted > tonumber(ARGV[4]) then
  return {epoch, top, 0}
end
local entries = redis.call('XREVRANGE', history, '+', '-', 'COUNT', wanted)
if #entries < wanted then
  return {epoch, top, 0}
end
local oldest = entries[wanted]
local fields = oldest[2]
local oldest_offset
for i = 1, #fields, 2 do
  if fields[i] == 'o' then oldest_offset = tonumber(fields[i + 1]) end
end
if oldest_offset ~= since + 1 then
  return {epoch, top, 0}
end
local ttl = tonumber(ARGV[5])
if ttl > 0 then
  local id = oldest[1]
  local ms = tonumber(string.sub(id, 1, string.find(id, '-', 1, true) - 1))
  local now = redis.call('TIME')
  if ms <= tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - ttl then
    return {epoch, top, 0}
  end
end
local result = {epoch, top, 1}
for i = wanted, 1, -1 do
  local f = entries[i][2]
  for j = 1, #f, 2 do
    if f[j] == 'd' then result[#result + 1] = f[j + 1] end
  end
end
return result
"""
