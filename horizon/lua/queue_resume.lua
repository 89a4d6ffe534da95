-- Resume a paused queue: ARGV[3] queue. Re-creates wake-up tokens for its pending jobs
-- (min(queue length, wake_cap)) so idle workers start at once. Returns 1 if it was paused.
local queue = ARGV[3]
local removed = redis.call('SREM', K.paused(), queue)
local want = math.min(redis.call('LLEN', K.queue(queue)), C.wake_cap) - redis.call('LLEN', K.wake(queue))
for _ = 1, want do redis.call('LPUSH', K.wake(queue), '1') end
if removed == 1 then queue_event('queue:resumed', queue) end
return removed
