-- Job-wide dedupe: claim fingerprints, SET NX EX per key (workers/claims.py)
-- KEYS: one claim key per fingerprint
-- ARGV[1]: TTL (s); ARGV[1 + i]: claimant of KEYS[i]
-- Returns per key the claimant holding it: ARGV[1 + i] when this call set it.
local out = {}
for i, key in ipairs(KEYS) do
  local me = ARGV[i + 1]
  if redis.call('SET', key, me, 'NX', 'EX', ARGV[1]) then
    out[i] = me
  else
    out[i] = redis.call('GET', key)
  end
end
return out
