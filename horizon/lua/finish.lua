-- Finish attempts and, in the same round trip, reserve the next jobs.
-- ARGV[3] n, then 5 fields per attempt: outcome, id, attempt, runtime ms, detail (see finish_one);
-- then ARGV[4 + 5n] how many jobs to reserve next (0: none), ARGV[5 + 5n] the reservation offset
-- in seconds (see reserve() in prelude.lua; 0 when the worker starts them at once),
-- ARGV[6 + 5n] the worker's name, ARGV[7 + 5n ..] queues in priority order.
-- Returns {n, state_1 .. state_n, <reserve result>} (see reserve.lua).
local n = tonumber(ARGV[3])
local result = {n}
for i = 0, n - 1 do
  local b = 4 + i * 5
  result[#result + 1] = finish_one(ARGV[b], ARGV[b + 1], tonumber(ARGV[b + 2]), ARGV[b + 3], ARGV[b + 4])
end
finish_flush()  -- metrics and trims of the completed ones (prefetch reads the runtime estimate)
local c = 4 + 5 * n
local count = tonumber(ARGV[c])
if count > 0 then
  local queues = {}
  for i = c + 3, #ARGV do queues[#queues + 1] = ARGV[i] end
  for _, v in ipairs(reserve(queues, '', count, tonumber(ARGV[c + 1]), ARGV[c + 2])) do result[#result + 1] = v end
end
flush_clock()
return result
