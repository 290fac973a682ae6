-- Budget ledger: reserve an amount on every scope or none (workers/guards/ledger.py).
-- KEYS[1] reservation record hash; KEYS[1+i] scope i hash, KEYS[1+n+i] scope i pending zset
-- ARGV[1] n scopes, ARGV[2] usd (pico, ceil), ARGV[3] tokens, ARGV[4] reservation TTL ms,
-- ARGV[5] record TTL s, ARGV[6] scope ids JSON, ARGV[7] scope TTLs JSON, ARGV[8] pending
-- member, then per scope i: ARGV[6+3i] USD cap (pico, '' = none), ARGV[7+3i] token cap
-- ('' = none), ARGV[8+3i] TTL s
-- Returns 1 when reserved now or already (a live reservation, or settled), 0 when over a cap.
-- Each total is raised, compared as a decimal string with the cap, then put back; on
-- success add() raises it for good.
--! include _ledger_helpers
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
