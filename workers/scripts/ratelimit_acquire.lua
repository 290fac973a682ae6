-- Global rate limit: take one request and ARGV[5] tokens (workers/guards/ratelimit.py)
-- KEYS[1] bucket hash: r, rts (request level and its time, ms), t, tts (tokens likewise);
-- a bucket without fields is full.
-- ARGV[1] request rate per s, ARGV[2] request capacity (ARGV[1] = 0: no request limit),
-- ARGV[3] token rate per s, ARGV[4] token capacity (ARGV[3] = 0: no token limit),
-- ARGV[5] tokens wanted
-- Returns "0" when taken, else the seconds to wait, >= 0.001 (a string: a Lua number would
-- become an integer).
--! include _now_ms
local h = redis.call('HMGET', KEYS[1], 'r', 'rts', 't', 'tts')
local r_rate, r_cap = tonumber(ARGV[1]), tonumber(ARGV[2])
local t_rate, t_cap = tonumber(ARGV[3]), tonumber(ARGV[4])
local want = tonumber(ARGV[5])
local function level(stored, at, rate, cap)
  if not stored then return cap end
  local elapsed = math.max(0, now - tonumber(at)) / 1000
  return math.min(cap, tonumber(stored) + elapsed * rate)
end
local wait = 0
local r, tk
if r_rate > 0 then
  r = level(h[1], h[2], r_rate, r_cap)
  if r < 1 then wait = (1 - r) / r_rate end
end
if t_rate > 0 then
  tk = level(h[3], h[4], t_rate, t_cap)
  local need = math.min(want, t_cap)
  if tk < need then wait = math.max(wait, (need - tk) / t_rate) end
end
-- never round a wait down to "0" (that reads as taken): at least 1 ms
if wait > 0 then return string.format('%.6f', math.max(wait, 0.001)) end
local refill = 0
if r_rate > 0 then
  r = r - 1
  redis.call('HSET', KEYS[1], 'r', string.format('%.17g', r), 'rts', now)
  refill = (r_cap - r) / r_rate
end
if t_rate > 0 then
  tk = tk - want
  redis.call('HSET', KEYS[1], 't', string.format('%.17g', tk), 'tts', now)
  refill = math.max(refill, (t_cap - tk) / t_rate)
end
local ttl = redis.call('PTTL', KEYS[1])
local keep = math.ceil(refill * 1000) + 1000
if ttl < keep then redis.call('PEXPIRE', KEYS[1], keep) end
return '0'
