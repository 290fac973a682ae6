-- Budget ledger: a scope's usage (workers/guards/ledger_redis.py).
-- KEYS[1] scope hash, KEYS[2] scope pending zset
-- ARGV: none
-- Returns {settled_usd, reserved_usd, settled_tokens, reserved_tokens} after dropping
-- expired reservations (integer strings, or false for 0).
--! include _ledger_helpers
purge(KEYS[1], KEYS[2], now_ms())
return redis.call('HMGET', KEYS[1], 'settled_usd', 'reserved_usd', 'settled_tokens',
  'reserved_tokens')
