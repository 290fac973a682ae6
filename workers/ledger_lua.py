"""The budget ledger's Lua scripts (``workers/ledger.py``), one atomic operation each,
every one headed by its KEYS / ARGV. Amounts are integer strings of pico-USD: the scripts
add them with ``HINCRBY`` and compare decimal strings, never Lua numbers (doubles)."""

from __future__ import annotations

# Shared helpers, prepended to every script. A scope hash holds settled_usd, reserved_usd,
# settled_tokens, reserved_tokens and total_usd / total_tokens (= settled + reserved), all
# integer strings. A pending member is "<usd pico>|<tokens>|<key>", scored by expiry (ms).
HELPERS = """
local function neg(s) if s == '0' then return '0' end return '-' .. s end
local function exceeds(total, cap)
  if string.byte(total, 1) == 45 then return false end
  if #total ~= #cap then return #total > #cap end
  for i = 1, #total do
    local a, b = string.byte(total, i), string.byte(cap, i)
    if a ~= b then return a > b end
  end
  return false
end
local function add(h, kind, usd, tokens)
  redis.call('HINCRBY', h, kind .. '_usd', usd)
  redis.call('HINCRBY', h, kind .. '_tokens', tokens)
  redis.call('HINCRBY', h, 'total_usd', usd)
  redis.call('HINCRBY', h, 'total_tokens', tokens)
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function purge(h, z, now)
  local cutoff = string.format('%d', now)
  local expired = redis.call('ZRANGEBYSCORE', z, '-inf', cutoff)
  for _, m in ipairs(expired) do
    local usd, tokens = string.match(m, '^(%d+)|(%d+)|')
    add(h, 'reserved', neg(usd), neg(tokens))
  end
  if #expired > 0 then redis.call('ZREMRANGEBYSCORE', z, '-inf', cutoff) end
end
local function unpend(h, z, member, usd, tokens)
  if member and redis.call('ZREM', z, member) == 1 then
    add(h, 'reserved', neg(usd), neg(tokens))
  end
end
local function touch(h, z, ttl)
  redis.call('EXPIRE', h, ttl)
  redis.call('EXPIRE', z, ttl)
end
"""

# KEYS[1] reservation record hash; KEYS[1+i] scope i hash, KEYS[1+n+i] scope i pending zset
# ARGV[1] n scopes, ARGV[2] usd (pico, ceil), ARGV[3] tokens, ARGV[4] reservation TTL ms,
# ARGV[5] record TTL s, ARGV[6] scope ids JSON, ARGV[7] scope TTLs JSON, ARGV[8] pending
# member, then per scope i: ARGV[6+3i] USD cap (pico, '' = none), ARGV[7+3i] token cap
# ('' = none), ARGV[8+3i] TTL s
# Returns 1 when reserved now or already (a live reservation, or settled), 0 when over a cap.
# Each total is raised, compared as a decimal string with the cap, then put back; on
# success add() raises it for good.
RESERVE = (
    HELPERS
    + """
local now = now_ms()
local rec = redis.call('HMGET', KEYS[1], 'state', 'exp')
if rec[1] == 'settled' or (rec[1] == 'reserved' and tonumber(rec[2]) > now) then return 1 end
local n = tonumber(ARGV[1])
for i = 1, n do purge(KEYS[1 + i], KEYS[1 + n + i], now) end
local over, done = false, 0
for i = 1, n do
  local h, usd_cap, tok_cap = KEYS[1 + i], ARGV[6 + 3 * i], ARGV[7 + 3 * i]
  redis.call('HINCRBY', h, 'total_usd', ARGV[2])
  redis.call('HINCRBY', h, 'total_tokens', ARGV[3])
  done = i
  if (usd_cap ~= '' and exceeds(redis.call('HGET', h, 'total_usd'), usd_cap))
    or (tok_cap ~= '' and exceeds(redis.call('HGET', h, 'total_tokens'), tok_cap)) then
    over = true
    break
  end
end
for i = 1, done do
  redis.call('HINCRBY', KEYS[1 + i], 'total_usd', neg(ARGV[2]))
  redis.call('HINCRBY', KEYS[1 + i], 'total_tokens', neg(ARGV[3]))
  redis.call('EXPIRE', KEYS[1 + i], ARGV[8 + 3 * i])
end
if over then return 0 end
local exp = string.format('%d', now + tonumber(ARGV[4]))
for i = 1, n do
  add(KEYS[1 + i], 'reserved', ARGV[2], ARGV[3])
  redis.call('ZADD', KEYS[1 + n + i], exp, ARGV[8])
  touch(KEYS[1 + i], KEYS[1 + n + i], ARGV[8 + 3 * i])
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'state', 'reserved', 'usd', ARGV[2], 'tokens', ARGV[3],
  'exp', exp, 'member', ARGV[8], 'scopes', ARGV[6], 'ttls', ARGV[7])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""
)

# KEYS as for reserve, built from the scope ids of ARGV[2]
# ARGV[1] n scopes, ARGV[2] scope ids JSON, ARGV[3] scope TTLs JSON, ARGV[4] usd (pico),
# ARGV[5] tokens, ARGV[6] record TTL s, ARGV[6+i] scope i TTL s
# Returns 1 when settled (on the record's scopes, or on ARGV[2] when there is no record),
# -1 when the record's scopes are not ARGV[2] (the caller reads them and retries).
SETTLE = (
    HELPERS
    + """
local rec = redis.call('HMGET', KEYS[1], 'scopes', 'state', 'usd', 'tokens', 'member')
if rec[1] and rec[1] ~= ARGV[2] then return -1 end
local n = tonumber(ARGV[1])
for i = 1, n do
  local h, z = KEYS[1 + i], KEYS[1 + n + i]
  if rec[2] == 'reserved' then unpend(h, z, rec[5], rec[3], rec[4])
  elseif rec[2] == 'settled' then add(h, 'settled', neg(rec[3]), neg(rec[4])) end
  add(h, 'settled', ARGV[4], ARGV[5])
  touch(h, z, ARGV[6 + i])
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'state', 'settled', 'usd', ARGV[4], 'tokens', ARGV[5],
  'scopes', ARGV[2], 'ttls', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[6])
return 1
"""
)

# KEYS as for reserve, built from the scope ids of ARGV[2]
# ARGV[1] n scopes, ARGV[2] the record's scope ids JSON as read by the caller
# Returns 1 when released, 0 when there was nothing to release (no record, settled,
# released), -1 when the record's scopes are not ARGV[2] (the caller retries).
RELEASE = (
    HELPERS
    + """
local rec = redis.call('HMGET', KEYS[1], 'scopes', 'state', 'usd', 'tokens', 'member')
if not rec[1] then return 0 end
if rec[1] ~= ARGV[2] then return -1 end
if rec[2] ~= 'reserved' then return 0 end
local n = tonumber(ARGV[1])
for i = 1, n do unpend(KEYS[1 + i], KEYS[1 + n + i], rec[5], rec[3], rec[4]) end
redis.call('HSET', KEYS[1], 'state', 'released')
redis.call('HDEL', KEYS[1], 'member', 'exp')
return 1
"""
)

# KEYS[1] scope hash, KEYS[2] scope pending zset
# Returns {settled_usd, reserved_usd, settled_tokens, reserved_tokens} after dropping
# expired reservations (integer strings, or false for 0).
USAGE = (
    HELPERS
    + """
purge(KEYS[1], KEYS[2], now_ms())
return redis.call('HMGET', KEYS[1], 'settled_usd', 'reserved_usd', 'settled_tokens',
  'reserved_tokens')
"""
)
