-- Delete the pending and scheduled jobs of a queue (reserved jobs are left to finish).
-- ARGV[3] queue, ARGV[4] batch size. Returns {removed, more} where more is 1 while jobs are left;
-- the caller repeats the call so Redis is never blocked for long.
local queue, batch = ARGV[3], tonumber(ARGV[4])
local removed = 0
for _ = 1, batch do
  local id = redis.call('RPOP', K.queue(queue))
  if not id then break end
  if redis.call('HGET', K.job(id), 'status') == 'pending' and remove_job(id, false) then
    removed = removed + 1
  end
end
for _, id in ipairs(redis.call('ZRANGE', K.delayed(queue), 0, batch - 1)) do
  redis.call('ZREM', K.delayed(queue), id)
  if redis.call('HGET', K.job(id), 'status') == 'scheduled' and remove_job(id, false) then
    removed = removed + 1
  end
end
local more = redis.call('LLEN', K.queue(queue)) > 0 or redis.call('ZCARD', K.delayed(queue)) > 0
if not more then redis.call('DEL', K.wake(queue)) end
queue_event('queue:cleared', queue, {count = removed})
return {removed, more and 1 or 0}
