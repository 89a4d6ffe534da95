-- Retry failed jobs of a queue: ARGV[3] queue, then pairs (failed id, new id). A job is
-- retried when it is failed, belongs to the queue, and has no retry that is pending, scheduled,
-- reserved or completed. Returns the new ids created.
local queue = ARGV[3]
local created = {}
local score
for i = 4, #ARGV - 1, 2 do
  local id, new_id = ARGV[i], ARGV[i + 1]
  local jk = K.job(id)
  local h = redis.call('HMGET', jk, 'status', 'name', 'queue', 'payload', 'tags', 'tries', 'timeout', 'backoff', 'type')
  local retried = decode_list(redis.call('HGET', jk, 'retried_by'))
  local live = false
  for _, r in ipairs(retried) do if r.status ~= 'failed' and r.status ~= 'cancelled' then live = true end end
  if h[1] == 'failed' and h[3] == queue and not live then
    score = fmt(stamp())
    local nk = K.job(new_id)
    redis.call('HSET', nk, 'id', new_id, 'name', h[2], 'queue', queue, 'status', 'pending',
      'payload', h[4], 'tags', h[5], 'attempts', '0', 'tries', h[6], 'timeout', h[7],
      'backoff', h[8], 'pushed_at', ftime(NOW), 'index', score, 'retry_of', id)
    if h[9] then redis.call('HSET', nk, 'type', h[9]) end
    enqueue(new_id, queue)
    redis.call('ZADD', K.index('recent'), score, new_id)
    redis.call('ZADD', K.index('pending'), score, new_id)
    index_monitored(new_id, score, h[5])
    retried[#retried + 1] = {id = new_id, status = 'pending', retried_at = NOW}
    redis.call('HSET', jk, 'retried_by', cjson.encode(retried))
    event('job:pending', new_id, queue, h[2], 'pending', {retry_of = id})
    created[#created + 1] = new_id
  end
end
flush_clock()
return created
