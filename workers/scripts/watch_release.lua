-- Drop-folder watcher: give up a lease if ours (producer/watch/claims.py)
-- KEYS[1] lease key
-- ARGV[1] owner token
-- Returns 1 if it was ours (deleted), else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
