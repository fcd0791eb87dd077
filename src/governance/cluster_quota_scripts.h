// The Lua scripts of cluster quotas, which Redis runs for the policy in cluster_quota.cc: lease
// and give back (token bucket, sliding window) with the gateways' fair shares, and the heartbeat.
// Kept apart so that tests can run them against a real redis-server with a `now` they choose.
//
// Contract with their callers: KEYS[1] is the key; the arguments are listed above each script,
// in that order. Replies are one integer or a flat array of integers (RedisLink copies them out
// with bounded sizes). `now` (microseconds), the last argument of a lease or of a bucket
// give-back, is "0" in production: the script then reads Redis TIME, so that gateway clocks do
// not matter. Every key written gets a TTL.
#pragma once

#include <cstddef>
#include <string>

namespace sluice::governance::quota_scripts {

// The order QuotaClient loads them in (RedisLink calls them by index).
enum Script : size_t { kBucket, kWindow, kBucketReturn, kWindowReturn, kHeartbeat, kCount };

// Fair shares between gateways (docs/cluster-limits.md, "Fairness"). Each gateway reports the
// demand it sees for the key (requests/s); its weight is its demand over the sum of the live
// gateways' demands (a gateway is live until the time it said it would come back, plus `hold`,
// or until it returns its lease). Its credit accrues at weight * rate, capped at weight * burst
// (at least one lease). A gateway may take what the key has (bucket tokens, or room in the
// window) minus the other live gateways' credits: their shares are reserved for them, whatever
// the order calls reach Redis in, and what nobody reserved goes to whoever asks (when the credits
// add up to more than the key has, it is split in proportion to them). The key's own
// bucket or window still bounds the total. Fields per gateway <m>: d:<m> demand, v:<m> live
// until (us), c:<m> credit, t:<m> the credit's time. Returns the hash's fields, this gateway's
// credit and weight, and the other gateways' credits.
inline constexpr const char* kFairShareLua = R"lua(
local function script_now(arg)
  local n = tonumber(arg)
  if n ~= nil and n > 0 then return n end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function share(key, member, demand, now, rate, burst, asked)
  local f = redis.call('HGETALL', key)
  local h = {}
  for i = 1, #f, 2 do h[f[i]] = f[i + 1] end
  local others = {}
  local total = demand
  for name, v in pairs(h) do
    if string.sub(name, 1, 2) == 'v:' then
      local m = string.sub(name, 3)
      if m ~= member then
        if tonumber(v) >= now then
          local d = tonumber(h['d:' .. m]) or 0
          total = total + d
          others[#others + 1] = {m, d}
        else
          redis.call('HDEL', key, 'v:' .. m, 'd:' .. m, 'c:' .. m, 't:' .. m, 'f:' .. m)
        end
      end
    end
  end
  local live = #others + 1
  local function weight_of(d)
    if total <= 0 then return 1 / live end
    return math.max(d / total, 0.01 / live)
  end
  local function credit_of(m, w)
    -- Never more than its share of what the key can hold: the credits then fit in the key.
    local cap = math.max(1, burst * w)
    local c = tonumber(h['c:' .. m])
    local ts = tonumber(h['t:' .. m])
    if c == nil or ts == nil then return cap end
    if now > ts then c = c + (now - ts) * rate * w end
    return math.min(cap, c)
  end
  local reserved = 0
  local others_f = nil
  for _, o in ipairs(others) do
    reserved = reserved + credit_of(o[1], weight_of(o[2]))
    local f = tonumber(h['f:' .. o[1]])
    if f ~= nil and (others_f == nil or f < others_f) then others_f = f end
  end
  local weight = weight_of(demand)
  -- What this gateway can expect to get at once: its lease, or its share of the burst if that
  -- is smaller (the wait is computed for it, else a gateway would wait for a lease it can never
  -- be granted whole).
  local target = math.min(asked, math.max(1, math.floor(burst * weight)))
  -- Virtual time (weighted fair queueing): each grant moves a gateway's f by tokens / weight, so
  -- equal f means shares in proportion to the weights. The gateway furthest behind (lowest f) is
  -- owed most: when the credits add up to more than the key holds, it may take a whole token
  -- that its proportional part (a fraction) would not give it. Without that, the gateway that
  -- calls most often takes every token the moment its fraction reaches one, and the others'
  -- fractions never do. A gateway new to the key, or idle, starts at most one share of the burst
  -- behind the others (it is owed its turn, not a backlog).
  local f = tonumber(h['f:' .. member])
  if others_f ~= nil then
    local floor = others_f - math.max(1, burst * weight) / weight
    if f == nil or f < floor then f = math.max(floor, 0) end
  elseif f == nil then
    f = 0
  end
  local owed = others_f == nil or f <= others_f
  return h, credit_of(member, weight), weight, reserved, target, owed, f
end

-- What this gateway may take of `room`: all of it but the others' credits; when the credits add
-- up to more than the room, the room split in proportion to the credits.
local function available(room, credit, reserved, owed)
  if room <= 0 then return 0 end
  if credit + reserved <= room then return room - reserved end
  local part = room * credit / (credit + reserved)
  if owed and part < 1 and room >= 1 and credit >= 1 then return 1 end
  return part
end
)lua";

// Token bucket, refilled by Redis TIME. KEYS[1]; ARGV: requests, per_us, burst, asked, ttl_ms,
// member, demand, hold_us, now. Returns {granted, tokens left, us until `asked` tokens are there
// (for this gateway's share), us until full}.
inline constexpr const char* kBucketScriptBody = R"lua(
local now = script_now(ARGV[9])
local requests = tonumber(ARGV[1])
local per = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local asked = tonumber(ARGV[4])
local member = ARGV[6]
local rate = requests / per
local v, credit, weight, reserved, target, owed, f =
    share(KEYS[1], member, tonumber(ARGV[7]), now, rate, burst, asked)
local tokens = tonumber(v['tk'])
local ts = tonumber(v['ts'])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
elseif now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate)
  ts = now
end
local avail = available(tokens, credit, reserved, owed)
local granted = math.floor(math.min(asked, avail))
if granted < 0 then granted = 0 end
tokens = tokens - granted
credit = math.max(0, credit - granted)
local wait = 0
if granted < asked then
  -- What is not reserved grows at least at this gateway's share of the rate.
  wait = (math.min(target, burst) - tokens) / rate
  if not owed then wait = math.max(wait, (target - (avail - granted)) / (rate * weight)) end
  wait = math.ceil(wait)
  if wait < 1000 then wait = 1000 end
end
redis.call('HSET', KEYS[1], 'tk', string.format('%.17g', tokens), 'ts', string.format('%.17g', ts),
           'd:' .. member, ARGV[7], 'v:' .. member, string.format('%.17g', now + wait + tonumber(ARGV[8])),
           'c:' .. member, string.format('%.17g', credit), 't:' .. member, string.format('%.17g', now),
           'f:' .. member, string.format('%.17g', f + granted / weight))
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {granted, math.floor(tokens), wait, math.ceil((burst - tokens) / rate)}
)lua";

// Gives unused tokens back; the gateway leaves the key's shares. KEYS[1]; ARGV: requests, per_us,
// burst, count, member, now.
inline constexpr const char* kBucketReturnScript = R"lua(
local m = ARGV[5]
redis.call('HDEL', KEYS[1], 'v:' .. m, 'd:' .. m, 'c:' .. m, 't:' .. m, 'f:' .. m)
local v = redis.call('HMGET', KEYS[1], 'tk', 'ts')
local tokens = tonumber(v[1])
local ts = tonumber(v[2])
if tokens == nil or ts == nil then return 0 end
local now = tonumber(ARGV[6])
if now == nil or now <= 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local requests = tonumber(ARGV[1])
local per = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * requests / per)
  ts = now
end
tokens = math.min(burst, tokens + tonumber(ARGV[4]))
redis.call('HSET', KEYS[1], 'tk', string.format('%.17g', tokens), 'ts', string.format('%.17g', ts))
return 1
)lua";

// Sliding window counter: counts of this window and the previous one, the previous weighted by
// how much of it still overlaps the window ending now. KEYS[1]; ARGV: limit, per_us, asked,
// ttl_ms, member, demand, hold_us, now. Returns {granted, remaining, us until `asked` may fit (for
// this gateway's share), us until full, window}.
inline constexpr const char* kWindowScriptBody = R"lua(
local now = script_now(ARGV[8])
local limit = tonumber(ARGV[1])
local per = tonumber(ARGV[2])
local asked = tonumber(ARGV[3])
local w = math.floor(now / per)
local member = ARGV[5]
local rate = limit / per
local h, credit, fair, reserved, target, owed, f =
    share(KEYS[1], member, tonumber(ARGV[6]), now, rate, limit, asked)
local sw = tonumber(h['w'])
local c = tonumber(h['c']) or 0
local p = tonumber(h['p']) or 0
if sw == nil or sw < w - 1 then
  c = 0
  p = 0
elseif sw == w - 1 then
  p = c
  c = 0
elseif sw > w then
  w = sw
end
local elapsed = now - w * per
if elapsed < 0 then elapsed = 0 end
local rest = per - elapsed
local weight = 1 - elapsed / per
local avail = available(limit - (p * weight + c), credit, reserved, owed)
local granted = math.floor(math.min(asked, avail))
if granted < 0 then granted = 0 end
c = c + granted
credit = math.max(0, credit - granted)
local wait = 0
if granted < asked then
  local room = limit - math.min(asked, limit) - c
  if p > 0 and room >= 0 then
    wait = per * (1 - room / p) - elapsed
  else
    wait = rest
  end
  if wait > rest then wait = rest end
  if not owed then wait = math.max(wait, (target - (avail - granted)) / (rate * fair)) end
  if wait < 1000 then wait = 1000 end
end
redis.call('HSET', KEYS[1], 'w', string.format('%.17g', w), 'c', c, 'p', p,
           'd:' .. member, ARGV[6], 'v:' .. member, string.format('%.17g', now + wait + tonumber(ARGV[7])),
           'c:' .. member, string.format('%.17g', credit), 't:' .. member, string.format('%.17g', now),
           'f:' .. member, string.format('%.17g', f + granted / fair))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local remaining = math.floor(limit - (p * weight + c))
if remaining < 0 then remaining = 0 end
local reset = 0
if p > 0 then reset = rest end
if c > 0 then reset = rest + per end
return {granted, remaining, math.ceil(wait), math.ceil(reset), w}
)lua";

// Gives unused tokens back to the window they were counted in; the gateway leaves the key's
// shares. KEYS[1]; ARGV: count, window, member.
inline constexpr const char* kWindowReturnScript = R"lua(
local m = ARGV[3]
redis.call('HDEL', KEYS[1], 'v:' .. m, 'd:' .. m, 'c:' .. m, 't:' .. m, 'f:' .. m)
local v = redis.call('HMGET', KEYS[1], 'w', 'c', 'p')
local sw = tonumber(v[1])
if sw == nil then return 0 end
local n = tonumber(ARGV[1])
local lw = tonumber(ARGV[2])
if sw == lw then
  redis.call('HSET', KEYS[1], 'c', math.max(0, (tonumber(v[2]) or 0) - n))
elseif sw == lw + 1 then
  redis.call('HSET', KEYS[1], 'p', math.max(0, (tonumber(v[3]) or 0) - n))
else
  return 0
end
return 1
)lua";

// Heartbeat: this gateway's member scored by Redis TIME (ms); members older than the TTL leave.
// KEYS[1]; ARGV: member, ttl_ms. Returns the live gateways.
inline constexpr const char* kHeartbeatScript = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return redis.call('ZCARD', KEYS[1])
)lua";

// The full text of each script, in Script order.
inline std::string text(Script s) {
  switch (s) {
    case kBucket:
      return std::string(kFairShareLua) + kBucketScriptBody;
    case kWindow:
      return std::string(kFairShareLua) + kWindowScriptBody;
    case kBucketReturn:
      return kBucketReturnScript;
    case kWindowReturn:
      return kWindowReturnScript;
    default:
      return kHeartbeatScript;
  }
}

}  // namespace sluice::governance::quota_scripts
