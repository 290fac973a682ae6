-- Prelude: `now`, Redis server time in integer milliseconds (included by the loader).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
