-- Budget ledger: settle a key's actual usage (workers/guards/ledger.py).
-- KEYS as for ledger_reserve, built from the scope ids of ARGV[2]
-- ARGV[1] n scopes, ARGV[2] scope ids JSON, ARGV[3] scope TTLs JSON, ARGV[4] usd (pico),
-- ARGV[5] tokens, ARGV[6] record TTL s, ARGV[6+i] scope i TTL s
-- Returns 1 when settled (on the record's scopes, or on ARGV[2] when there is no record),
-- -1 when the record's scopes are not ARGV[2] (the caller reads them and retries).
--! include _ledger_helpers
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
