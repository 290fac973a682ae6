-- Unique prompt ids: claim ids, HSETNX per id (workers/claims.py)
-- KEYS[i]: the claims hash of item i's bucket
-- ARGV[1]: TTL (s); ARGV[2i]: item i's id digest (hash field), ARGV[2i + 1]: its claimant
-- Returns per item the claimant holding the id: ARGV[2i + 1] when this call set it.
local out, seen = {}, {}
for i, key in ipairs(KEYS) do
  local field, me = ARGV[2 * i], ARGV[2 * i + 1]
  if redis.call('HSETNX', key, field, me) == 1 then
    out[i] = me
  else
    out[i] = redis.call('HGET', key, field)
  end
  if not seen[key] then
    seen[key] = true
    redis.call('EXPIRE', key, ARGV[1])
  end
end
return out
