-- Nightly schedules: undo a claim whose submission failed for a transient reason, so
-- the next tick tries again (workers/nightly.py)
-- KEYS as nightly_claim
-- ARGV[1] window epoch s, ARGV[2] the previous last window
-- Returns 1.
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) end
redis.call('DEL', KEYS[2])
return 1
