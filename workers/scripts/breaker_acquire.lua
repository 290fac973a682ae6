-- Circuit breaker: may a call go now? (workers/guards/breaker.py)
-- The state hash holds `state` ("open" or absent = closed), `open_until` (ms), `consec`
-- (consecutive failures) and, per window bucket i, `e<i>` (bucket epoch = floor(now /
-- bucket width)), `c<i>` (calls), `f<i>` (failures). The probe set maps lease token ->
-- lease expiry (ms). Times are integer ms from Redis TIME.
-- KEYS[1] state hash, KEYS[2] probe leases (sorted set)
-- ARGV[1] lease token, ARGV[2] half_open_probes, ARGV[3] probe lease ms
-- Returns 0 open (do not call), 1 closed (call), 2 probe granted (call as a probe).
--! include _now_ms
local h = redis.call('HMGET', KEYS[1], 'state', 'open_until')
if h[1] ~= 'open' then return 1 end
if now < tonumber(h[2]) then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[3]) + 1000)
return 2
