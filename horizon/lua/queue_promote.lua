-- Promote a queue's scheduled (delayed) jobs to pending now: ARGV[3] queue, ARGV[4] limit.
-- Jobs waiting for a parent are not delayed jobs and stay. Returns {promoted, remaining}.
local queue, limit = ARGV[3], tonumber(ARGV[4])
local ids = redis.call('ZRANGE', K.delayed(queue), 0, limit - 1)
local promoted = 0
for _, id in ipairs(ids) do
  redis.call('ZREM', K.delayed(queue), id)
  local jk = K.job(id)
  if redis.call('HGET', jk, 'status') == 'scheduled' then
    redis.call('HSET', jk, 'status', 'pending')
    redis.call('HDEL', jk, 'available_at')
    enqueue(id, queue)
    event('job:pending', id, queue, redis.call('HGET', jk, 'name'), 'pending', {promoted = true})
    promoted = promoted + 1
  end
end
return {promoted, redis.call('ZCARD', K.delayed(queue))}
