-- Reserve: atomic check-and-charge of one request across counters (see package quota for
-- the algorithm: GCRA in leaky-bucket form, a hash {l = level, t = updated at, µs}).
-- KEYS[i]: counter i, all in one hash slot.
-- ARGV[1]: now in µs, or "" to read the Redis server clock.
-- ARGV[2+3(i-1)], ARGV[3+3(i-1)], ARGV[4+3(i-1)]: kind ("r" requests, "t" tokens),
--   amount, window in µs, of counter i.
-- Returns {admitted, then per counter: fits, remaining, reset_after_us, retry_after_us}.
local EPS = 1e-6
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end

local n = #KEYS
local levels, updated = {}, {}
local admitted = 1
for i = 1, n do
  local a = 3 * (i - 1)
  local amount, window = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local st = redis.call('HMGET', KEYS[i], 'l', 't')
  local level, t = 0, now
  if st[1] then
    level, t = tonumber(st[1]), tonumber(st[2])
    -- A clock behind the last update drains nothing.
    if now > t then
      level = math.max(0, level - (now - t) * amount / window)
      t = now
    end
  end
  levels[i], updated[i] = level, t
  if level > amount - 1 + EPS then admitted = 0 end
end

local out = {admitted}
for i = 1, n do
  local a = 3 * (i - 1)
  local kind, amount, window = ARGV[a + 2], tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local level = levels[i]
  local fits, retry = 1, 0
  if level > amount - 1 + EPS then
    fits = 0
    retry = math.ceil((level - amount + 1) * window / amount)
  end
  if admitted == 1 and kind == 'r' then
    level = level + 1
    redis.call('HSET', KEYS[i], 'l', string.format('%.17g', level), 't', string.format('%.17g', updated[i]))
    -- Once drained the counter equals a missing key; a second of slack covers clock skew.
    redis.call('PEXPIRE', KEYS[i], math.ceil(level * window / amount / 1000) + 1000)
  end
  local remaining = math.max(0, math.floor(amount - level + EPS))
  local reset = math.ceil(level * window / amount)
  out[#out + 1] = fits
  out[#out + 1] = remaining
  out[#out + 1] = reset
  out[#out + 1] = retry
end
return out
