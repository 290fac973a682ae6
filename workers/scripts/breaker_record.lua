-- Circuit breaker: record a call's outcome (workers/guards/breaker.py)
-- The state hash holds `state` ("open" or absent = closed), `open_until` (ms), `consec`
-- (consecutive failures) and, per window bucket i, `e<i>` (bucket epoch = floor(now /
-- bucket width)), `c<i>` (calls), `f<i>` (failures). The probe set maps lease token ->
-- lease expiry (ms). Times are integer ms from Redis TIME.
-- KEYS[1] state hash, KEYS[2] probe leases (sorted set)
-- ARGV[1] ok (1/0), ARGV[2] probe (1/0), ARGV[3] lease token to release ('' = none),
-- ARGV[4] failures, ARGV[5] failure_rate, ARGV[6] min_calls, ARGV[7] bucket width ms,
-- ARGV[8] number of buckets, ARGV[9] cooldown ms, ARGV[10] state TTL ms
-- Returns the state afterwards: 0 open (or half-open), 1 closed.
--! include _now_ms
local ok = ARGV[1] == '1'
local probe = ARGV[2] == '1'
local ttl = tonumber(ARGV[10])
if ARGV[3] ~= '' then redis.call('ZREM', KEYS[2], ARGV[3]) end
local function open()
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'state', 'open', 'open_until', now + tonumber(ARGV[9]))
  redis.call('PEXPIRE', KEYS[1], ttl)
  return 0
end
local h = redis.call('HMGET', KEYS[1], 'state', 'open_until')
if h[1] == 'open' then
  if probe and now >= tonumber(h[2]) then
    if ok then
      redis.call('DEL', KEYS[1])
      return 1
    end
    return open()
  end
  return 0
end
local consec = 0
if ok then
  redis.call('HSET', KEYS[1], 'consec', 0)
else
  consec = redis.call('HINCRBY', KEYS[1], 'consec', 1)
end
local n = tonumber(ARGV[8])
local epoch = math.floor(now / tonumber(ARGV[7]))
local i = epoch % n
if tonumber(redis.call('HGET', KEYS[1], 'e' .. i)) ~= epoch then
  redis.call('HSET', KEYS[1], 'e' .. i, epoch, 'c' .. i, 0, 'f' .. i, 0)
end
redis.call('HINCRBY', KEYS[1], 'c' .. i, 1)
if not ok then redis.call('HINCRBY', KEYS[1], 'f' .. i, 1) end
redis.call('PEXPIRE', KEYS[1], ttl)
if ok then return 1 end
if consec >= tonumber(ARGV[4]) then return open() end
local calls, fails = 0, 0
for j = 0, n - 1 do
  local b = redis.call('HMGET', KEYS[1], 'e' .. j, 'c' .. j, 'f' .. j)
  if b[1] and tonumber(b[1]) > epoch - n then
    calls = calls + tonumber(b[2])
    fails = fails + tonumber(b[3])
  end
end
if calls >= tonumber(ARGV[6]) and fails >= tonumber(ARGV[5]) * calls then return open() end
return 1
