-- Commit: add tokens to token counters (same storage as reserve.lua).
-- KEYS[i]: counter i, all in one hash slot.
-- ARGV[1]: now in µs, or "" to read the Redis server clock. ARGV[2]: tokens.
-- ARGV[3+2(i-1)], ARGV[4+2(i-1)]: amount, window in µs, of counter i.
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local tokens = tonumber(ARGV[2])
for i = 1, #KEYS do
  local a = 2 * (i - 1)
  local amount, window = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local st = redis.call('HMGET', KEYS[i], 'l', 't')
  local level, t = 0, now
  if st[1] then
    level, t = tonumber(st[1]), tonumber(st[2])
    if now > t then
      level = math.max(0, level - (now - t) * amount / window)
      t = now
    end
  end
  level = level + tokens
  redis.call('HSET', KEYS[i], 'l', string.format('%.17g', level), 't', string.format('%.17g', t))
  redis.call('PEXPIRE', KEYS[i], math.ceil(level * window / amount / 1000) + 1000)
end
return 0
