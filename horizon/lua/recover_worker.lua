-- A worker died (its supervisor reaped it): put back at once every job it held, instead of
-- when their reservation windows end (a prefetched batch's windows add up to many timeouts).
-- ARGV[3] = the worker's name (the 'worker' field its reservations wrote), ARGV[4..] = the queues
-- it served. Returns the number of jobs put back (or failed, when that was their last try).
local worker, recovered = ARGV[3], 0
for i = 4, #ARGV do
  local q = ARGV[i]
  -- every reservation of the queue: as many as workers x prefetch, and a worker dies rarely
  for _, id in ipairs(redis.call('ZRANGE', K.reserved(q), 0, -1)) do
    if redis.call('HGET', K.job(id), 'worker') == worker then
      redis.call('ZREM', K.reserved(q), id)
      if recover_one(q, id, 'its worker died') then recovered = recovered + 1 end
    end
  end
end
flush_clock()
return recovered
