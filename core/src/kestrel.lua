--[==[
Kestrel ID generator: the script fallback for servers that cannot load the module.

KEYS[1]  lock key: the last Unix millisecond used by this generator (or the high-water mark
         the Kestrel module reserved), a decimal string
KEYS[2]  sequence key: the last sequence used in that millisecond, a decimal string
KEYS[3]  shard-id key: the generator's logical shard id, a decimal string
ARGV[1]  max sequence (4095)
ARGV[2]  min shard id (1)
ARGV[3]  max shard id (1023)
ARGV[4]  count: how many IDs, 1 to max sequence + 1
ARGV[5]  now in Unix ms from the caller's clock; when absent the server's TIME is used

Reply: { start sequence, end sequence, shard id, seconds, microseconds }, where
seconds * 1000 + microseconds / 1000 is the Unix millisecond shared by all the IDs, and each
ID is ((ms - 1451566800000) << 22) | (shard << 12) | sequence for sequence = start .. end.

Errors: "Logical shard ID out of range" when the shard id is missing or outside
[ARGV[2], ARGV[3]]; "KESTREL_BADCOUNT", "KESTREL_BADARG" and "KESTREL_BADSTATE" for a bad
count, bad arguments (ARGV beyond the ID layout: max sequence above 4095, shard ids outside
1..1023) or state keys holding something other than decimal integers in range;
"KESTREL_CLOCK" for a time before the epoch and "KESTREL_EXHAUSTED" past the end of the
41-bit space. Nothing is written when an error is returned.
]==]

local function integer(text)
  if type(text) ~= 'string' or not string.match(text, '^%-?%d+$') or #text > 16 then
    return nil
  end
  return tonumber(text)
end

local EPOCH_MS = 1451566800000
local LAST_MS = EPOCH_MS + 2199023255551

-- Reads a state key: its number, `default` when it is missing, or nil and an error reply when
-- it holds another type or something other than a decimal integer from 0 to `max`.
local function read_state(key, default, max)
  local value = redis.pcall('GET', key)
  if type(value) == 'table' and value.err then
    return nil, redis.error_reply('KESTREL_BADSTATE key ' .. key ..
      ' is not a string; delete it or fix it')
  end
  if value == false then
    return default
  end
  local number = integer(value)
  if number == nil or number < 0 or number > max then
    return nil, redis.error_reply('KESTREL_BADSTATE key ' .. key ..
      ' does not hold a decimal integer from 0 to ' .. string.format('%d', max) ..
      '; delete it or fix it')
  end
  return number
end

if #KEYS ~= 3 then
  return redis.error_reply('KESTREL_BADARG expected 3 KEYS: lock key, sequence key, ' ..
    'shard-id key')
end
if KEYS[1] == KEYS[2] or KEYS[2] == KEYS[3] or KEYS[1] == KEYS[3] then
  return redis.error_reply('KESTREL_BADARG the lock, sequence and shard-id keys must be ' ..
    'three different keys')
end

-- Keys named the standard way must be one generator's three keys, in order; custom names
-- (the original library lets them be set) are taken as given.
local SUFFIXES = { '-generator-lock', '-generator-sequence', '-shard-id' }
local function name_of(key, suffix)
  if #key > #suffix and string.sub(key, -#suffix) == suffix then
    return string.sub(key, 1, #key - #suffix)
  end
  return nil
end
local standard = false
for _, key in ipairs(KEYS) do
  for _, suffix in ipairs(SUFFIXES) do
    standard = standard or name_of(key, suffix) ~= nil
  end
end
if standard then
  local name = name_of(KEYS[1], SUFFIXES[1])
  if name == nil or name_of(KEYS[2], SUFFIXES[2]) ~= name
      or name_of(KEYS[3], SUFFIXES[3]) ~= name then
    return redis.error_reply('KESTREL_BADARG KEYS must be one generator\'s ' ..
      '{name}-generator-lock, {name}-generator-sequence and {name}-shard-id, in that order')
  end
end

local max_sequence = integer(ARGV[1])
local min_shard = integer(ARGV[2])
local max_shard = integer(ARGV[3])
local count = integer(ARGV[4])
if max_sequence == nil or min_shard == nil or max_shard == nil or count == nil then
  return redis.error_reply('KESTREL_BADARG expected ARGV: max sequence, min shard id, ' ..
    'max shard id, count[, now in Unix ms], all decimal integers')
end
if max_sequence < 0 or max_sequence > 4095 or min_shard < 1 or max_shard > 1023
    or min_shard > max_shard then
  return redis.error_reply('KESTREL_BADARG ARGV must fit the ID layout: max sequence 0 to ' ..
    '4095, shard ids 1 to 1023 with min <= max')
end
if count < 1 or count > max_sequence + 1 then
  return redis.error_reply('KESTREL_BADCOUNT count must be an integer from 1 to ' ..
    (max_sequence + 1))
end

local now
if ARGV[5] ~= nil then
  now = integer(ARGV[5])
  if now == nil or now < 0 then
    return redis.error_reply('KESTREL_BADARG ARGV[5] must be the time in Unix ms')
  end
else
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
if now < EPOCH_MS then
  return redis.error_reply('KESTREL_CLOCK the time ' .. string.format('%d', now) ..
    ' is before the ID epoch ' .. string.format('%d', EPOCH_MS))
end

local shard = read_state(KEYS[3], nil, max_shard)
if shard == nil or shard < min_shard or shard > max_shard then
  return redis.error_reply('Logical shard ID out of range: ' .. KEYS[3] ..
    ' must hold an integer from ' .. min_shard .. ' to ' .. max_shard)
end

local last_ms, lock_error = read_state(KEYS[1], -1, LAST_MS)
if lock_error then
  return lock_error
end
local last_sequence, sequence_error = read_state(KEYS[2], max_sequence, max_sequence)
if sequence_error then
  return sequence_error
end

local used = math.max(now, last_ms)
local start_sequence = 0
local end_sequence = count - 1
if used == last_ms then
  start_sequence = last_sequence + 1
  end_sequence = start_sequence + count - 1
  if end_sequence > max_sequence then
    used = used + 1
    start_sequence = 0
    end_sequence = count - 1
  end
end

if used > LAST_MS then
  return redis.error_reply('KESTREL_EXHAUSTED the 41-bit time space ends at Unix ms ' ..
    string.format('%d', LAST_MS) .. '; no more IDs can be made')
end

redis.call('SET', KEYS[1], string.format('%d', used))
redis.call('SET', KEYS[2], string.format('%d', end_sequence))

local seconds = math.floor(used / 1000)
return { start_sequence, end_sequence, shard, seconds, (used - seconds * 1000) * 1000 }
