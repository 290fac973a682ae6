-- Job state: fail a job unless it has ended (workers/jobstate.py)
-- KEYS[1] job hash
-- ARGV[1] TTL s, ARGV[2..] field, value pairs (state=failed, error, ...)
-- Returns 1 if the job is now failed by this call, 0 if it had already ended (succeeded,
-- or failed with an earlier reason, which is kept): of racing failures the first one wins.
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'succeeded' or state == 'failed' then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
