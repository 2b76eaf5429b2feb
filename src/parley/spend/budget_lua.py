"""The budget ledger's Lua scripts (`parley.spend.ledger.RedisLedger`): reserve, shrink, settle,
and the count of the processes sharing the budgets."""

from __future__ import annotations

from parley.store.lua_batch import LuaPart

# KEYS: one hash per budget. ARGV: now, request id, bound, floor, hold expiry, instance id, the
# heartbeat key prefix, heartbeat TTL (ms), input cost, output price per token (0: never cap), then
# per budget: limit, period end, seed ('' = unknown); then, optionally, a lease's id and amount.
# Per budget h: h {spent, period, reserved}; h:amt {rid: amount}; h:exp zset rid -> expiry;
# h:inst set of instances holding money on h; h:of:<instance> set of that instance's rids.
# A heartbeat TTL of 0 sends no heartbeat (one was sent lately). Expired holds and those of
# instances whose heartbeat is gone are released when a reservation would get less than its bound
# without them (with room for the bound, releasing them changes nothing it gets).
# `budget_check` (the heartbeat, then nothing changed): {'seed', i...} when budgets i are missing
# and have no seed. `budget_reserve`: {granted, which, least, capped, leased}; when less than the
# bound is granted, max_tokens is capped to what it covers and the hold shrunk to that (capped > 0);
# `leased`: the lease held too ('': none, when what is left after the hold is under 8 leases).
BUDGET_FNS = """
local function budget_check(KEYS, ARGV)
  if tonumber(ARGV[8]) > 0 then redis.call('SET', ARGV[7] .. ARGV[6], 1, 'PX', ARGV[8]) end
  local missing = {'seed'}
  for i, h in ipairs(KEYS) do
    if ARGV[10 + i * 3] == '' and not redis.call('HGET', h, 'period') then missing[#missing + 1] = i end
  end
  if #missing > 1 then return missing end
  return nil
end
local function budget_drop(h, m)
  local amt = redis.call('HGET', h .. ':amt', m)
  if amt then redis.call('HINCRBYFLOAT', h, 'reserved', -tonumber(amt)) end
  redis.call('HDEL', h .. ':amt', m); redis.call('ZREM', h .. ':exp', m)
end
local function budget_clean(h, now, alive)
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', h .. ':exp', '-inf', now)) do budget_drop(h, m) end
  for _, other in ipairs(redis.call('SMEMBERS', h .. ':inst')) do
    if redis.call('EXISTS', alive .. other) == 0 then
      for _, m in ipairs(redis.call('SMEMBERS', h .. ':of:' .. other)) do budget_drop(h, m) end
      redis.call('DEL', h .. ':of:' .. other); redis.call('SREM', h .. ':inst', other)
    end
  end
end
local function budget_least(rooms)
  local least, which = nil, 0
  for i, room in ipairs(rooms) do
    if least == nil or room < least then least = room; which = i end
  end
  return least, which
end
local function budget_hold(KEYS, rid, held, expiry, inst)
  for _, h in ipairs(KEYS) do
    redis.call('HINCRBYFLOAT', h, 'reserved', held)
    redis.call('HSET', h .. ':amt', rid, held)
    redis.call('ZADD', h .. ':exp', expiry, rid)
    redis.call('SADD', h .. ':inst', inst); redis.call('SADD', h .. ':of:' .. inst, rid)
  end
end
local function budget_reserve(KEYS, ARGV)
  local now = tonumber(ARGV[1]); local rid = ARGV[2]; local bound = tonumber(ARGV[3])
  local floor = tonumber(ARGV[4])
  local inst = ARGV[6]; local alive = ARGV[7]
  local rooms, rest = {}, {}
  for i, h in ipairs(KEYS) do
    local base = 10 + (i - 1) * 3
    local limit = tonumber(ARGV[base + 1]); local period = tonumber(ARGV[base + 2])
    local v = redis.call('HMGET', h, 'period', 'spent', 'reserved')
    local spent = tonumber(v[2] or 0)
    if not v[1] then
      redis.call('HSET', h, 'spent', ARGV[base + 3], 'period', period); spent = tonumber(ARGV[base + 3])
    elseif tonumber(v[1]) < period then
      redis.call('HSET', h, 'spent', 0, 'period', period); spent = 0
    end
    rest[i] = limit - spent
    rooms[i] = rest[i] - tonumber(v[3] or 0)
  end
  local least, which = budget_least(rooms)
  if least < math.max(bound, floor) or least <= 0 then
    -- short of the bound: release expired holds and those of instances whose heartbeat is gone
    -- (with room for the bound, releasing them changes nothing this reservation would get)
    for i, h in ipairs(KEYS) do
      budget_clean(h, now, alive)
      rooms[i] = rest[i] - tonumber(redis.call('HGET', h, 'reserved') or 0)
    end
    least, which = budget_least(rooms)
  end
  if least < floor or least <= 0 then return {0, which, string.format('%.17g', least), 0} end
  local amount = math.min(bound, least)
  local held, capped, unit = amount, 0, tonumber(ARGV[10])
  if amount < bound and unit > 0 then
    local input = tonumber(ARGV[9])
    capped = math.max(1, math.floor((amount - input) / unit))
    if input + capped * unit < amount then held = input + capped * unit end
  end
  budget_hold(KEYS, rid, string.format('%.17g', held), ARGV[5], inst)
  -- a lease asked for with it (`parley.spend.budget_lease`): held only far from every limit
  local lease_at = 10 + 3 * #KEYS
  local lease, leased = ARGV[lease_at + 1], ''
  local want = tonumber(ARGV[lease_at + 2] or '')
  if lease and lease ~= '' and want and least - amount > 0 and least - amount >= 8 * want then
    leased = string.format('%.17g', want)  -- (0 for requests of no price: a lease of no money)
    budget_hold(KEYS, lease, leased, ARGV[5], inst)
  end
  return {string.format('%.17g', amount), which, string.format('%.17g', least), capped, leased}
end
"""

RESERVE = (
    BUDGET_FNS
    + """
local missing = budget_check(KEYS, ARGV)
if missing then return missing end
return budget_reserve(KEYS, ARGV)
"""
)

# The reservation as a part of the admission call (`parley.filters.admission`).
ADMIT_PART = LuaPart(BUDGET_FNS, run="budget_reserve", check="budget_check")

SHRINK = """
local rid = ARGV[1]; local amount = tonumber(ARGV[2])
for _, h in ipairs(KEYS) do
  local held = redis.call('HGET', h .. ':amt', rid)
  if held and tonumber(held) > amount then
    redis.call('HINCRBYFLOAT', h, 'reserved', amount - tonumber(held))
    redis.call('HSET', h .. ':amt', rid, amount)
  end
end
return 1
"""

# A hold released by another instance (this one's heartbeat lapsed) only adds the cost.
SETTLE_FN = """
local function budget_settle(KEYS, ARGV)
  local rid = ARGV[1]; local cost = tonumber(ARGV[2]); local inst = ARGV[3]
  local costs = string.format('%.17g', cost)
  for _, h in ipairs(KEYS) do
    local held = redis.call('HGET', h .. ':amt', rid)
    if held then
      redis.call('HINCRBYFLOAT', h, 'reserved', -tonumber(held))
      redis.call('HDEL', h .. ':amt', rid); redis.call('ZREM', h .. ':exp', rid)
    end
    redis.call('SREM', h .. ':of:' .. inst, rid)
    -- (a budget gone from Redis is not made again by a cost alone; one with a hold is there)
    if cost > 0 and (held or redis.call('EXISTS', h) == 1) then
      redis.call('HINCRBYFLOAT', h, 'spent', costs)
    end
  end
  return 1
end
"""

SETTLE = SETTLE_FN + "return budget_settle(KEYS, ARGV)"


# The processes sharing the budgets: a sorted set of instance -> heartbeat expiry. KEYS: the set;
# ARGV: now, this instance's expiry, instance id. Returns how many are alive (this one included).
PEERS = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZCARD', KEYS[1])
"""
