-- Nightly schedules: claim a window (workers/nightly.py)
-- KEYS[1] schedule's last window (epoch s), KEYS[2] this window's key
-- ARGV[1] window epoch s, ARGV[2] claim record, ARGV[3] TTL s
-- Returns the previous last window (-1: none) if this call claimed the window, else nil.
local last = redis.call('GET', KEYS[1]) or '-1'
if tonumber(last) >= tonumber(ARGV[1]) then return nil end
if not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'EX', ARGV[3]) then return nil end
redis.call('SET', KEYS[1], ARGV[1])
return last
