-- Reserve the next job: ARGV[3] = woken_by queue or '', ARGV[4..] = queues in priority order.
-- Returns {id, queue, name, payload, attempts, tries, timeout, backoff, tags}
-- or {'', next_due} where next_due is when something becomes runnable ('' = nothing known).
local queues = {}
for i = 4, #ARGV do queues[#queues + 1] = ARGV[i] end
local r = reserve(queues, ARGV[3])
flush_clock()
return r
