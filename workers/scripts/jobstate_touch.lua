-- Job state: note that a running job is still at work (workers/jobstate.py), e.g. a
-- batch-mode tier polling its provider batches, so that beat's stalled-job sweep leaves it.
-- KEYS[1] job hash
-- ARGV[1] now (unix seconds: updated_at)
-- Returns 1 if the job was running and is touched, 0 otherwise (ended, or its state lost:
-- a lost state is left for reconcile, never half re-created here).
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[1])
return 1
