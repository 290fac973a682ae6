-- Circuit breaker: its state, for operators (workers/guards/breaker.py)
-- KEYS[1] state hash
-- ARGV: none
-- Returns 0 closed, 1 open, 2 half-open.
--! include _now_ms
local h = redis.call('HMGET', KEYS[1], 'state', 'open_until')
if h[1] ~= 'open' then return 0 end
if now < tonumber(h[2]) then return 1 end
return 2
