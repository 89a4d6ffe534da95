-- Put back at once the jobs a worker held, instead of when their reservation windows end (a
-- prefetched batch's windows add up to many timeouts): for its supervisor when the worker died
-- (mode 'died': as an expired reservation, so a job that may have been running counts a try),
-- and for the worker itself when a reply that reserved jobs for it was lost (mode 'unstarted':
-- it never started them, so they are released without counting a try).
-- ARGV[3] = the worker's name (the 'worker' field its reservations wrote), ARGV[4] = mode,
-- ARGV[5] = k, then k ids to leave reserved (jobs the caller still holds), then the queues it
-- served. Returns the number of jobs put back (or failed, when that was their last try).
local worker, unstarted, recovered = ARGV[3], ARGV[4] == 'unstarted', 0
local k = tonumber(ARGV[5])
local keep = {}
for i = 6, 5 + k do keep[ARGV[i]] = true end
for i = 6 + k, #ARGV do
  local q = ARGV[i]
  -- every reservation of the queue: as many as workers x prefetch, and this is rare
  for _, id in ipairs(redis.call('ZRANGE', K.reserved(q), 0, -1)) do
    if not keep[id] then
      local h = redis.call('HMGET', K.job(id), 'worker', 'attempts')
      if h[1] == worker then
        if unstarted then
          if finish_one('release', id, tonumber(h[2]), '0', '') == 'pending' then recovered = recovered + 1 end
        else
          redis.call('ZREM', K.reserved(q), id)
          if recover_one(q, id, 'its worker died') then recovered = recovered + 1 end
        end
      end
    end
  end
end
finish_flush()
flush_clock()
return recovered
