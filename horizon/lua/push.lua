-- Push jobs: ARGV[3] = count, then 10 fields per job:
--   id, name, queue, payload (JSON), tags (JSON list), tries, timeout, backoff (JSON list),
--   available_at (unix seconds or ''), extra (JSON object of further hash fields or '').
-- Returns the number of jobs pushed.
local n = tonumber(ARGV[3])
local monitored = redis.call('SCARD', K.monitoring()) > 0
local runnable = {}  -- queue -> jobs made runnable: one SADD and one batch of wake tokens per queue
for i = 0, n - 1 do
  local b = 4 + i * 10
  local id, name, queue, payload, tags = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  local available_at = tonumber(ARGV[b + 8])
  local jk = K.job(id)
  local score = fmt(stamp())
  local status = 'pending'
  if available_at and available_at > NOW then status = 'scheduled' end
  redis.call('HSET', jk, 'id', id, 'name', name, 'queue', queue, 'status', status,
    'payload', payload, 'tags', tags, 'attempts', '0', 'tries', ARGV[b + 5],
    'timeout', ARGV[b + 6], 'backoff', ARGV[b + 7], 'pushed_at', ftime(NOW), 'index', score)
  if ARGV[b + 9] ~= '' then
    for k, v in pairs(cjson.decode(ARGV[b + 9])) do redis.call('HSET', jk, k, tostring(v)) end
  end
  if status == 'scheduled' then
    redis.call('HSET', jk, 'available_at', ftime(available_at))
    redis.call('ZADD', K.delayed(queue), ftime(available_at), id)
  else
    redis.call('LPUSH', K.queue(queue), id)
  end
  runnable[queue] = (runnable[queue] or 0) + (status == 'pending' and 1 or 0)
  redis.call('ZADD', K.index('recent'), score, id)
  redis.call('ZADD', K.index('pending'), score, id)
  if monitored then index_monitored(id, score, tags) end
  event(status == 'pending' and 'job:pending' or 'job:delayed', id, queue, name, status)
end
for queue, count in pairs(runnable) do
  redis.call('SADD', K.queues(), queue)
  -- as enqueue() per job: a wake-up token per runnable job, at most wake_cap waiting
  local tokens = math.min(count, C.wake_cap - redis.call('LLEN', K.wake(queue)))
  if tokens > 0 then
    local ones = {}
    for t = 1, tokens do ones[t] = '1' end
    redis.call('LPUSH', K.wake(queue), unpack(ones))
  end
end
flush_clock()
trim_index('recent', C.trim.recent)
trim_index('pending', C.trim.pending)
return n
