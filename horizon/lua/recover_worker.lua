-- Put back at once the jobs a worker held, instead of when their reservation windows end (a
-- prefetched batch's windows add up to many timeouts): for its supervisor when the worker died,
-- and for the worker itself when the reply that reserved its next batch was lost.
-- ARGV[3] = the worker's name (the 'worker' field its reservations wrote), ARGV[4] = why (for the
-- stalled event and a WorkerLost error), ARGV[5] = k, then k ids to leave reserved (jobs the
-- caller still holds), then the queues it served. Returns the number of jobs put back (or
-- failed, when that was their last try).
local worker, why, recovered = ARGV[3], ARGV[4], 0
local k = tonumber(ARGV[5])
local keep = {}
for i = 6, 5 + k do keep[ARGV[i]] = true end
for i = 6 + k, #ARGV do
  local q = ARGV[i]
  -- every reservation of the queue: as many as workers x prefetch, and this is rare
  for _, id in ipairs(redis.call('ZRANGE', K.reserved(q), 0, -1)) do
    if not keep[id] and redis.call('HGET', K.job(id), 'worker') == worker then
      redis.call('ZREM', K.reserved(q), id)
      if recover_one(q, id, why) then recovered = recovered + 1 end
    end
  end
end
flush_clock()
return recovered
