-- Queue metadata of the JSON-RPC `jq` namespace (horizon/repositories/queue_meta.py).
-- K.queue_meta() hash: 'next_id' counter, 'q:<name>' -> JSON {id, priority, job_defaults},
-- 'id:<n>' -> name. Queue 'default' always has id 1 (jq's __default__; id 0 also names it).
-- ARGV[3] op, then:
--   describe, configured queues...      -> JSON list of {name, id, priority, job_defaults, jobs_count, suspended}
--   one, name                           -> JSON of that queue, or nil when it does not exist
--   add, name, priority, defaults JSON, suspended ('1'|'0')  -> JSON meta, or error CONFLICT
--   update, name, new name|'', priority|'', defaults JSON|''  -> JSON meta, or error NOT_FOUND/CONFLICT
--   delete, name                        -> 1 (the queue must be suspended and drained), or error NOT_FOUND/CONFLICT
local op = ARGV[3]
local MK = K.queue_meta()

local function meta(name)
  local raw = redis.call('HGET', MK, 'q:' .. name)
  if raw then return cjson.decode(raw) end
  return nil
end

local function save(name, m)
  redis.call('HSET', MK, 'q:' .. name, cjson.encode(m), 'id:' .. m.id, name)
end

local function ensure(name)
  local m = meta(name)
  if m then return m end
  local id
  if name == 'default' then
    id = 1
    if tonumber(redis.call('HGET', MK, 'next_id') or '0') < 1 then redis.call('HSET', MK, 'next_id', 1) end
  else
    if tonumber(redis.call('HGET', MK, 'next_id') or '0') < 1 then redis.call('HSET', MK, 'next_id', 1) end
    id = redis.call('HINCRBY', MK, 'next_id', 1)
  end
  m = {id = id, priority = 'normal', job_defaults = {}}
  save(name, m)
  return m
end

local function exists(name)
  return name == 'default' or redis.call('HEXISTS', MK, 'q:' .. name) == 1
    or redis.call('SISMEMBER', K.queues(), name) == 1
end

-- A queue deleted or renamed away: its own indexes, metrics and snapshots go too (nothing would
-- trim them once it is out of the queues set, and its metrics would be snapshotted for ever).
local function forget_bookkeeping(name)
  redis.call('DEL', K.queue_index(name, 'completed'), K.queue_index(name, 'failed'), K.queue_metrics(name),
    K.queue_snapshots(name), K.ratelimit(name), K.reserved(name))
  redis.call('SREM', K.measured_queues(), name)
end

local function describe(name)
  local m = ensure(name)
  local count = redis.call('LLEN', K.queue(name)) + redis.call('ZCARD', K.delayed(name))
  local jd = m.job_defaults
  if next(jd) == nil then jd = cjson.decode('{}') end
  return {name = name, id = m.id, priority = m.priority, job_defaults = jd, jobs_count = count,
    suspended = paused(name)}
end

if op == 'describe' then
  local seen, names = {}, {}
  local function note(n) if not seen[n] then seen[n] = true; names[#names + 1] = n end end
  note('default')
  for i = 4, #ARGV do note(ARGV[i]) end
  for _, n in ipairs(redis.call('SMEMBERS', K.queues())) do note(n) end
  local fields = redis.call('HKEYS', MK)
  for _, f in ipairs(fields) do
    if string.sub(f, 1, 2) == 'q:' then note(string.sub(f, 3)) end
  end
  local out = {}
  for _, n in ipairs(names) do out[#out + 1] = describe(n) end
  return cjson.encode(out)
end

local name = ARGV[4]

if op == 'one' then
  if not exists(name) then return false end
  return cjson.encode(describe(name))
end

if op == 'add' then
  if exists(name) then return redis.error_reply('CONFLICT queue ' .. name .. ' already exists') end
  local m = ensure(name)
  m.priority = ARGV[5]
  m.job_defaults = cjson.decode(ARGV[6])
  save(name, m)
  redis.call('SADD', K.queues(), name)
  if ARGV[7] == '1' then redis.call('SADD', K.paused(), name) end
  queue_event('queue:added', name, {})
  return cjson.encode(describe(name))
end

if not exists(name) then return redis.error_reply('NOT_FOUND queue ' .. name .. ' does not exist') end

if op == 'update' then
  local m = ensure(name)
  local new = ARGV[5]
  if ARGV[6] ~= '' then m.priority = ARGV[6] end
  if ARGV[7] ~= '' then
    for k, v in pairs(cjson.decode(ARGV[7])) do m.job_defaults[k] = v end
  end
  if new ~= '' and new ~= name then
    if name == 'default' then return redis.error_reply('CONFLICT the default queue cannot be renamed') end
    if exists(new) then return redis.error_reply('CONFLICT queue ' .. new .. ' already exists') end
    local busy = redis.call('LLEN', K.queue(name)) + redis.call('ZCARD', K.delayed(name))
      + redis.call('ZCARD', K.reserved(name))
    if busy > 0 then return redis.error_reply('CONFLICT only a queue without jobs can be renamed') end
    redis.call('HDEL', MK, 'q:' .. name)
    redis.call('SREM', K.queues(), name)
    forget_bookkeeping(name)
    redis.call('SADD', K.queues(), new)
    if redis.call('SREM', K.paused(), name) == 1 then redis.call('SADD', K.paused(), new) end
    queue_event('queue:deleted', name, {})
    name = new
  end
  save(name, m)
  queue_event('queue:updated', name, {})
  return cjson.encode(describe(name))
end

if op == 'delete' then
  if name == 'default' then return redis.error_reply('CONFLICT the default queue cannot be deleted') end
  if not paused(name) then return redis.error_reply('CONFLICT suspend the queue before deleting it') end
  local left = redis.call('LLEN', K.queue(name)) + redis.call('ZCARD', K.delayed(name))
  if left > 0 then return redis.error_reply('CONFLICT the queue still has ' .. left .. ' jobs; drain it first') end
  -- a running job's reservation is recovered (its worker lost) only for a queue still known
  local running = redis.call('ZCARD', K.reserved(name))
  if running > 0 then
    return redis.error_reply('CONFLICT ' .. running .. ' job(s) of the queue are running; delete it once they end')
  end
  local m = meta(name)
  redis.call('DEL', K.queue(name), K.delayed(name), K.wake(name))
  forget_bookkeeping(name)
  redis.call('SREM', K.queues(), name)
  redis.call('SREM', K.paused(), name)
  redis.call('HDEL', MK, 'q:' .. name)
  if m then redis.call('HDEL', MK, 'id:' .. m.id) end
  queue_event('queue:deleted', name, {})
  return 1
end

return redis.error_reply('BAD_REQUEST unknown op ' .. tostring(op))
