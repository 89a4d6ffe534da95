-- Pause a queue for every worker on every host: ARGV[3] queue. Idle workers' wake-up tokens
-- are dropped (reserve skips paused queues). Returns 1 if it was running, 0 if already paused.
local queue = ARGV[3]
local added = redis.call('SADD', K.paused(), queue)
redis.call('SADD', K.queues(), queue)
redis.call('DEL', K.wake(queue))
if added == 1 then queue_event('queue:paused', queue) end
return added
