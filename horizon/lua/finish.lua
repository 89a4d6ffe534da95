-- Finish an attempt and, in the same round trip, reserve the next job.
-- ARGV[3] outcome: 'completed' | 'failed' (retry if tries are left) | 'failed_final'
-- ARGV[4] id, ARGV[5] attempt, ARGV[6] runtime ms, ARGV[7] exception JSON (failed) or output ('')
-- ARGV[8] '1' to reserve the next job, ARGV[9..] queues in priority order.
-- Returns {state, <reserve result...>} where state is the job's new status or 'stale'.
local outcome, id, attempt, runtime = ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local jk = K.job(id)
local h = redis.call('HMGET', jk, 'status', 'attempts', 'tries', 'queue', 'name', 'backoff', 'retry_of',
  'tags', 'index')
local state = 'stale'
local queue, name = h[4], h[5]

local function still_ours()
  if h[1] == 'reserved' and tonumber(h[2]) == attempt then return true end
  -- the reservation was taken back while this attempt ran; a success still counts
  if outcome == 'completed' and h[1] == 'pending' then
    redis.call('LREM', K.queue(queue), 1, id)
    return true
  end
  if outcome == 'completed' and h[1] == 'scheduled' then
    redis.call('ZREM', K.delayed(queue), id)
    return true
  end
  return false
end

if h[1] and still_ours() then
  redis.call('ZREM', K.reserved(queue), id)
  if outcome == 'completed' then
    local score = fmt(stamp())
    redis.call('HSET', jk, 'status', 'completed', 'completed_at', ftime(NOW), 'runtime', ARGV[6])
    if ARGV[7] ~= '' then redis.call('HSET', jk, 'output', ARGV[7]) end
    redis.call('ZREM', K.index('pending'), id)
    if C.silenced[name] then
      redis.call('ZADD', K.index('silenced'), score, id)
    else
      redis.call('ZADD', K.index('completed'), score, id)
    end
    -- per-queue completed index (jq history by queue, queue detail counts), trimmed like the global one
    redis.call('ZADD', K.queue_index(queue, 'completed'), score, id)
    redis.call('ZREMRANGEBYSCORE', K.queue_index(queue, 'completed'), '-inf', '(' .. cutoff(C.trim.completed))
    record_metrics(name, queue, runtime)
    redis.call('EXPIRE', jk, keep_for(C.trim.completed, index_monitored(id, h[9] or score, h[8])))
    if h[7] then update_retried_by(h[7], id, 'completed') end
    workflow_done(id, true)
    event('job:completed', id, queue, name, 'completed', {runtime = runtime})
    trim_index(C.silenced[name] and 'silenced' or 'completed', C.trim.completed)  -- the one it went into
    state = 'completed'
  else
    local attempts, tries = tonumber(h[2]), tonumber(h[3])
    if outcome == 'failed' and attempts < tries then
      local backoff = decode_list(h[6])
      local delay = tonumber(backoff[math.min(attempts, #backoff)] or 0) or 0
      redis.call('HSET', jk, 'exception', ARGV[7])
      if delay > 0 then
        redis.call('HSET', jk, 'status', 'scheduled', 'available_at', ftime(NOW + delay))
        redis.call('ZADD', K.delayed(queue), ftime(NOW + delay), id)
        event('job:delayed', id, queue, name, 'scheduled', {attempts = attempts, delay = delay})
        state = 'scheduled'
      else
        redis.call('HSET', jk, 'status', 'pending')
        enqueue(id, queue)
        event('job:pending', id, queue, name, 'pending', {attempts = attempts})
        state = 'pending'
      end
    else
      fail_final(id, queue, name, ARGV[7])
      state = 'failed'
    end
  end
end

local result = {state}
if ARGV[8] == '1' then
  local queues = {}
  for i = 9, #ARGV do queues[#queues + 1] = ARGV[i] end
  for _, v in ipairs(reserve(queues, '')) do result[#result + 1] = v end
end
flush_clock()
return result
