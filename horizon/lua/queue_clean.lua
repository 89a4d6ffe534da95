-- Clean a queue: remove up to ARGV[6] of its jobs in state ARGV[4] ('completed' | 'failed') that
-- finished more than ARGV[5] seconds ago; ARGV[3] queue. Reads the queue's own index (scores are
-- microsecond stamps of the transition), oldest first. ARGV[7] is unused ('' kept for callers).
-- Returns {removed, more} where more is '1' when another call may find further jobs, else ''.
local queue, state, grace, limit = ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local index = K.queue_index(queue, state)
local ids = redis.call('ZRANGEBYSCORE', index, '-inf', '(' .. cutoff(grace), 'LIMIT', 0, limit)
local removed = 0
for _, id in ipairs(ids) do
  local status = redis.call('HGET', K.job(id), 'status')
  if status == state then
    if remove_job(id, false) then removed = removed + 1 end
  end
  redis.call('ZREM', index, id)  -- retried or expired records: drop the stale entry too
end
return {removed, #ids == limit and '1' or ''}
