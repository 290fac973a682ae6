-- Budget ledger: release a key's reservation (workers/guards/ledger_redis.py).
-- KEYS[1] the key's record, KEYS[1+i] scope i hash, KEYS[1+n+i] scope i pending zset,
-- built from the scope ids of ARGV[2]
-- ARGV[1] n scopes, ARGV[2] the record's scope ids JSON as read by the caller
-- Returns 1 when released, 0 when there was nothing to release (no record, settled,
-- released), -1 when the record's scopes are not ARGV[2] (the caller retries).
--! include _ledger_helpers
local rec = redis.call('HMGET', KEYS[1], 'scopes', 'state', 'usd', 'tokens', 'member')
if not rec[1] then return 0 end
if rec[1] ~= ARGV[2] then return -1 end
if rec[2] ~= 'reserved' then return 0 end
local n = tonumber(ARGV[1])
for i = 1, n do unpend(KEYS[1 + i], KEYS[1 + n + i], rec[5], rec[3], rec[4]) end
redis.call('HSET', KEYS[1], 'state', 'released')
redis.call('HDEL', KEYS[1], 'member', 'exp')
return 1
