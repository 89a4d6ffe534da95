-- Drain a queue: remove up to ARGV[4] of its pending and scheduled (delayed) jobs,
-- ARGV[3] queue; ARGV[5] how many the drain's earlier calls removed (0 or absent: none). Each
-- removed job emits job:removed; the call that empties the queue emits queue:drained with the
-- whole drain's count. Returns {removed, remaining} (the caller repeats while remaining > 0).
local queue, limit, before = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5] or '0') or 0
local removed = 0
while removed < limit do
  local id = redis.call('RPOP', K.queue(queue))
  if not id then break end
  if remove_job(id, false) then removed = removed + 1 end
end
while removed < limit do
  local ids = redis.call('ZRANGE', K.delayed(queue), 0, math.min(limit - removed, 500) - 1)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    redis.call('ZREM', K.delayed(queue), id)
    if remove_job(id, false) then removed = removed + 1 end
  end
end
local remaining = redis.call('LLEN', K.queue(queue)) + redis.call('ZCARD', K.delayed(queue))
if remaining == 0 then
  redis.call('DEL', K.wake(queue))
  queue_event('queue:drained', queue, {removed = before + removed})
end
return {removed, remaining}
