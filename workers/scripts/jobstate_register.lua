-- Job state: register a job afresh (workers/jobstate.py)
-- KEYS[1] job hash, KEYS[2..] the job's other (stale) keys
-- ARGV[1] TTL s, ARGV[2..] field, value pairs
-- Returns 1 if registered, 0 if the job is running (nothing changed): the check and the
-- write are one step, so of two racing registrations exactly one wins.
if redis.call('HGET', KEYS[1], 'state') == 'running' then return 0 end
for i = 1, #KEYS do redis.call('DEL', KEYS[i]) end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
