-- Budget ledger: reserve each of m keys' amounts on every scope or none (workers/guards/ledger_redis.py).
-- All m keys are reserved on the same n scopes, in order: each fits or not after the ones
-- before it (one call for a provider batch's rows; a single reserve is m = 1).
-- KEYS[i] scope i hash, KEYS[n+i] scope i pending zset (i = 1..n), KEYS[2n+j] key j's record
-- ARGV[1] n scopes, ARGV[2] m keys, ARGV[3] reservation TTL ms, ARGV[4] record TTL s,
-- ARGV[5] scope ids JSON, ARGV[6] scope TTLs JSON,
-- per scope i: ARGV[4+3i] USD cap (pico, '' = none), ARGV[5+3i] token cap ('' = none),
-- ARGV[6+3i] TTL s; per key j, from b = 6+3n+3(j-1): ARGV[b+1] usd (pico, ceil),
-- ARGV[b+2] tokens, ARGV[b+3] pending member
-- Returns a list: per key 1 when reserved now or already (a live reservation, or settled),
-- 0 when over a cap. Each total is raised, compared as a decimal string with the cap, then
-- put back; on success add() raises it for good.
--! include _ledger_helpers
local now = now_ms()
local n, m = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 1, n do purge(KEYS[i], KEYS[n + i], now) end
local exp = string.format('%d', now + tonumber(ARGV[3]))
local out = {}
for j = 1, m do
  local record, b = KEYS[2 * n + j], 6 + 3 * n + 3 * (j - 1)
  local usd, tokens, member = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local rec = redis.call('HMGET', record, 'state', 'exp')
  if rec[1] == 'settled' or (rec[1] == 'reserved' and tonumber(rec[2]) > now) then
    out[j] = 1
  else
    local over, done = false, 0
    for i = 1, n do
      local h, usd_cap, tok_cap = KEYS[i], ARGV[4 + 3 * i], ARGV[5 + 3 * i]
      redis.call('HINCRBY', h, 'total_usd', usd)
      redis.call('HINCRBY', h, 'total_tokens', tokens)
      done = i
      if (usd_cap ~= '' and exceeds(redis.call('HGET', h, 'total_usd'), usd_cap))
        or (tok_cap ~= '' and exceeds(redis.call('HGET', h, 'total_tokens'), tok_cap)) then
        over = true
        break
      end
    end
    for i = 1, done do
      redis.call('HINCRBY', KEYS[i], 'total_usd', neg(usd))
      redis.call('HINCRBY', KEYS[i], 'total_tokens', neg(tokens))
      redis.call('EXPIRE', KEYS[i], ARGV[6 + 3 * i])
    end
    if over then
      out[j] = 0
    else
      for i = 1, n do
        add(KEYS[i], 'reserved', usd, tokens)
        redis.call('ZADD', KEYS[n + i], exp, member)
        touch(KEYS[i], KEYS[n + i], ARGV[6 + 3 * i])
      end
      redis.call('DEL', record)
      redis.call('HSET', record, 'state', 'reserved', 'usd', usd, 'tokens', tokens,
        'exp', exp, 'member', member, 'scopes', ARGV[5], 'ttls', ARGV[6])
      redis.call('EXPIRE', record, ARGV[4])
      out[j] = 1
    end
  end
end
return out
