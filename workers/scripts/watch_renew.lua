-- Drop-folder watcher: renew a lease if still ours (producer/watch/claims.py)
-- KEYS[1] lease key
-- ARGV[1] owner token, ARGV[2] lease ms
-- Returns 1 if still ours (renewed), else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
