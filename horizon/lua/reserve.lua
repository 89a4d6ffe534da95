-- Reserve jobs: ARGV[3] = woken_by queue ('' none, '?' unknown), ARGV[4] = at most how many,
-- ARGV[5] = the reserving worker's name, ARGV[6..] = queues in priority order.
-- Returns 9 fields per job {id, queue, name, payload, attempts, tries, timeout, backoff, tags ...}
-- or {'', next_due} where next_due is when something becomes runnable ('' = nothing known).
local queues = {}
for i = 6, #ARGV do queues[#queues + 1] = ARGV[i] end
local r = reserve(queues, ARGV[3], tonumber(ARGV[4]), 0, ARGV[5])
flush_clock()
return r
