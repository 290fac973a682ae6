-- Prelude of the ledger scripts (included by the loader, never run alone).
-- A scope hash holds settled_usd, reserved_usd, settled_tokens, reserved_tokens and
-- total_usd / total_tokens (= settled + reserved), all integer strings of pico-USD / tokens.
-- A pending member is "<usd pico>|<tokens>|<key>", scored by expiry (ms).
-- Amounts are added with HINCRBY and compared as decimal strings, never as Lua numbers.
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
