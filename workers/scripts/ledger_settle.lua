-- Budget ledger: settle m keys' actual usage (workers/guards/ledger_redis.py), each replacing its
-- reservation or its previous settlement (the last wins).
-- KEYS as for ledger_reserve, built from the scope ids of ARGV[3]
-- ARGV[1] n scopes, ARGV[2] m keys, ARGV[3] scope ids JSON, ARGV[4] scope TTLs JSON,
-- ARGV[5] record TTL s, ARGV[5+i] scope i TTL s; per key j: ARGV[5+n+2j-1] usd (pico),
-- ARGV[5+n+2j] tokens
-- Returns a list: per key 1 when settled (on the record's scopes, or on ARGV[3] when there
-- is no record), -1 when the record's scopes are not ARGV[3] (the caller reads them and
-- settles that key again).
--! include _ledger_helpers
local n, m = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for j = 1, m do
  local record = KEYS[2 * n + j]
  local usd, tokens = ARGV[5 + n + 2 * j - 1], ARGV[5 + n + 2 * j]
  local rec = redis.call('HMGET', record, 'scopes', 'state', 'usd', 'tokens', 'member')
  if rec[1] and rec[1] ~= ARGV[3] then
    out[j] = -1
  else
    for i = 1, n do
      local h, z = KEYS[i], KEYS[n + i]
      if rec[2] == 'reserved' then unpend(h, z, rec[5], rec[3], rec[4])
      elseif rec[2] == 'settled' then add(h, 'settled', neg(rec[3]), neg(rec[4])) end
      add(h, 'settled', usd, tokens)
      touch(h, z, ARGV[5 + i])
    end
    redis.call('DEL', record)
    redis.call('HSET', record, 'state', 'settled', 'usd', usd, 'tokens', tokens,
      'scopes', ARGV[3], 'ttls', ARGV[4])
    redis.call('EXPIRE', record, ARGV[5])
    out[j] = 1
  end
end
return out
