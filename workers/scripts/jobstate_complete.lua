-- Job state: record a written part; detect the job's completion (workers/jobstate.py)
-- KEYS[1] chunk expected set, KEYS[2] chunk done set, KEYS[3] job chunks_done set,
-- KEYS[4] job hash, KEYS[5] job parts hash
-- ARGV[1] part name, ARGV[2] counts JSON, ARGV[3] chunk number, ARGV[4] total chunks,
-- ARGV[5] part key (chunk/part), ARGV[6] TTL seconds, ARGV[7] now (unix seconds: updated_at)
-- Returns 1 exactly once: when the last part of the last chunk is recorded.
redis.call('HSET', KEYS[5], ARGV[5], ARGV[2])
redis.call('HSET', KEYS[4], 'updated_at', ARGV[7])
redis.call('SADD', KEYS[2], ARGV[1])
local expected = redis.call('SMEMBERS', KEYS[1])
local all_done = true
for _, name in ipairs(expected) do
  if redis.call('SISMEMBER', KEYS[2], name) == 0 then all_done = false end
end
for i = 2, 5 do redis.call('EXPIRE', KEYS[i], tonumber(ARGV[6])) end
if not all_done then return 0 end
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[6]))
if redis.call('SCARD', KEYS[3]) >= tonumber(ARGV[4]) then
  if redis.call('HSETNX', KEYS[4], 'finalize_enqueued', '1') == 1 then return 1 end
end
return 0
