"""The Lua scripts that charge requests atomically in Redis: one request, or a batch in one call.

It mirrors policy/counters/walk.py: same recipient order, same "first breach" rule, same
all-or-nothing balance check, and stores the same JSON record (policy/counters/record.py) under
the request id in the same script, so a crash between charge and remember() cannot count twice.

ARGV: prefix, request id, idempotency ttl, debit account ('' = none), price per segment, and the
recipients as one JSON array: [[index, segments, [[key, amount, limit, ttl, span, code, limit id],
...]], ...]. One JSON argument instead of seven per increment: redis-py packs every argument in
Python, and that, not the script, was most of a charge's cost.

Keys are derived inside the script (sliding windows read `span` buckets), so it runs on a
standalone Redis or one primary, not across Redis Cluster slots.
"""

_CHARGE_FUNCTION = r"""
local function charge(prefix, request_id, idem_ttl, debit_account, price, recipients)
local req_key = prefix .. 'req:' .. request_id

local prior = redis.call('HMGET', req_key, 'r', 's')
if prior[1] or prior[2] then
  return {1, prior[1], prior[2]}
end

local stored = {}
local function current(full, span)
  local v = stored[full]
  if v then return v end
  if span == 1 then
    v = tonumber(redis.call('GET', full) or '0')
  else
    local base, hi = string.match(full, '^(.*):(%-?%d+)$')
    hi = tonumber(hi)
    local names = {}
    for b = hi - span + 1, hi do names[#names + 1] = base .. ':' .. string.format('%d', b) end
    v = 0
    for _, x in ipairs(redis.call('MGET', unpack(names))) do
      if x then v = v + tonumber(x) end
    end
  end
  stored[full] = v
  return v
end

local adds, ttls, order = {}, {}, {}
local ok, rej, vals = {}, {}, {}
local segments = 0
for _, rc in ipairs(recipients) do
  local idx, seg = rc[1], rc[2]
  local mine, mine_order = {}, {}
  local breached = false
  for _, inc in ipairs(rc[3]) do
    local key, amount, limit = inc[1], inc[2], inc[3]
    local full = prefix .. 'c:' .. key
    local before = current(full, inc[5]) + (adds[full] or 0) + (mine[full] or 0)
    vals[#vals + 1] = {key, before, limit, inc[7]}
    if before + amount > limit then
      breached = true
      rej[#rej + 1] = {idx, inc[6], inc[7]}
      break
    end
    if not mine[full] then mine[full] = 0; mine_order[#mine_order + 1] = full end
    mine[full] = mine[full] + amount
    ttls[full] = inc[4]
  end
  if not breached then
    for _, full in ipairs(mine_order) do
      if not adds[full] then adds[full] = 0; order[#order + 1] = full end
      adds[full] = adds[full] + mine[full]
    end
    ok[#ok + 1] = idx
    segments = segments + seg
  end
end

local insufficient = false
local balance_after = nil
if debit_account ~= '' then
  local bal_key = prefix .. 'balance'
  local raw = redis.call('HGET', bal_key, debit_account)
  local have = raw and tonumber(raw) or 0
  local debit = segments * price
  if raw then balance_after = have end
  if debit > have then
    insufficient = true
    ok = {}
  elseif debit > 0 then
    balance_after = redis.call('HINCRBY', bal_key, debit_account, -debit)
  end
end

if not insufficient then
  for _, full in ipairs(order) do
    -- a bucket's ttl is fixed by its window, so it is set once, when INCRBY creates the key
    if redis.call('INCRBY', full, adds[full]) == adds[full] then
      redis.call('EXPIRE', full, ttls[full])
    end
  end
end

local rec = {ok = ok, rej = rej, val = vals, insuff = insufficient}
if balance_after then rec.bal = balance_after end
local encoded = cjson.encode(rec)
redis.call('HSET', req_key, 'r', encoded)
redis.call('EXPIRE', req_key, idem_ttl)
return {0, encoded}
end
"""

CHARGE_LUA = _CHARGE_FUNCTION + r"""
return charge(ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]), cjson.decode(ARGV[6]))
"""

# ARGV: prefix, idempotency ttl, the jobs as one JSON array: [[request id, debit account ('' =
# none), price, recipients as above], ...]. The charges run one after another, as separate
# scripts would; a charge that raises (e.g. a counter key holding a non-integer) answers
# {2, message} and the others still run.
CHARGE_MANY_LUA = _CHARGE_FUNCTION + r"""
local prefix, idem_ttl = ARGV[1], tonumber(ARGV[2])
local out = {}
for i, job in ipairs(cjson.decode(ARGV[3])) do
  local ok, reply = pcall(charge, prefix, job[1], idem_ttl, job[2], job[3], job[4])
  if ok then
    out[i] = reply
  else
    out[i] = {2, type(reply) == 'table' and (reply.err or cjson.encode(reply)) or tostring(reply)}
  end
end
return out
"""

# ARGV: prefix, then request id, answer, request id, answer, ... (the charge set their TTL)
STORE_ANSWERS_LUA = r"""
for i = 2, #ARGV, 2 do
  redis.call('HSET', ARGV[1] .. 'req:' .. ARGV[i], 's', ARGV[i + 1])
end
return (#ARGV - 1) / 2
"""
