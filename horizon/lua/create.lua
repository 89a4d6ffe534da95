-- Create one job from the API with an idempotency key and/or a parent, atomically.
-- ARGV[3] idempotency key ('' = none), ARGV[4] body hash, ARGV[5] key ttl (s), ARGV[6] parent id ('' = none),
-- ARGV[7..16] the job as in push.lua: id, name, queue, payload, tags, tries, timeout, backoff, available_at, extra.
-- Returns {'created', id, status} | {'replay', id} | {'conflict', id} | {'parent_missing', parent}
-- | {'parent_terminal', parent, parent status}. A child of an unfinished parent is 'scheduled',
-- recorded in the parent's children set and not queued until the parent completes.
local key, body_hash, ttl, parent = ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local id, name, queue, payload, tags = ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local available_at = tonumber(ARGV[15])

if key ~= '' then
  local seen = redis.call('GET', K.idempotency(key))
  if seen then
    local rec = cjson.decode(seen)
    if rec.hash == body_hash then return {'replay', rec.id} end
    return {'conflict', rec.id}
  end
end

-- the same call run again after its reply was lost (a client's retry): the job is there already
if redis.call('EXISTS', K.job(id)) == 1 then return {'replay', id} end

local waiting = false
if parent ~= '' then
  local ps = redis.call('HGET', K.job(parent), 'status')
  if not ps then return {'parent_missing', parent} end
  if ps == 'failed' or ps == 'cancelled' then return {'parent_terminal', parent, ps} end
  waiting = ps ~= 'completed'
end

-- the job record and its indexes: mirrors push.lua's per-job write
local jk = K.job(id)
local score = fmt(stamp())
local status = 'pending'
if waiting or (available_at and available_at > NOW) then status = 'scheduled' end
redis.call('HSET', jk, 'id', id, 'name', name, 'queue', queue, 'status', status,
  'payload', payload, 'tags', tags, 'attempts', '0', 'tries', ARGV[12],
  'timeout', ARGV[13], 'backoff', ARGV[14], 'pushed_at', NOW_TEXT, 'index', score)
if ARGV[16] ~= '' then
  for k, v in pairs(cjson.decode(ARGV[16])) do redis.call('HSET', jk, k, tostring(v)) end
end
if parent ~= '' then redis.call('HSET', jk, 'after', parent) end
if key ~= '' then redis.call('HSET', jk, 'idempotency_key', key) end
if waiting then
  if available_at then redis.call('HSET', jk, 'available_at', ftime(available_at)) end
  redis.call('SADD', K.children(parent), id)
  redis.call('HSET', K.job(parent), 'has_children', '1')  -- finish looks for children only then
elseif status == 'scheduled' then
  redis.call('HSET', jk, 'available_at', ftime(available_at))
  delay_job(id, queue, available_at)
else
  enqueue(id, queue)
end
redis.call('SADD', K.queues(), queue)
redis.call('ZADD', K.index('recent'), score, id)
redis.call('ZADD', K.index('pending'), score, id)
index_monitored(id, score, tags)
if key ~= '' then
  redis.call('SET', K.idempotency(key), cjson.encode({id = id, hash = body_hash}), 'EX', ttl)
end
event(status == 'pending' and 'job:pending' or 'job:delayed', id, queue, name, status,
  parent ~= '' and {after = parent} or nil)
flush_clock()
trim_index('recent', C.trim.recent)
trim_index('pending', C.trim.pending)
return {'created', id, status}
