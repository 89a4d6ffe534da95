-- Put back at once the jobs a worker held, instead of when their reservation windows end (a
-- prefetched batch's windows add up to many timeouts): for its supervisor when the worker died,
-- and for the worker itself when a reply that reserved jobs for it was lost.
-- ARGV[3] = the worker's name (the 'worker' field its reservations wrote), ARGV[4] = mode,
-- ARGV[5] = the id of the job it was running ('' none), ARGV[6] = k, then k ids to leave
-- reserved (jobs the caller still holds), then the queues it served.
-- Mode 'release': the running job is put back as an expired reservation (its attempt counts a
-- try, so a job that keeps killing its worker ends failed with WorkerLost); every other job is
-- released without counting one (it never started, or ran but was not acknowledged: it runs
-- again). Mode 'overran': as 'release', the running job having run past its timeout and hard
-- timeout (its supervisor killed the worker): a last try fails with JobTimeout, not WorkerLost.
-- Mode 'died' (which job ran is unknown): each is put back as an expired reservation.
-- Returns the number of jobs put back (or failed, when that was their last try).
local worker, mode, running, recovered = ARGV[3], ARGV[4], ARGV[5], 0
local release = mode == 'release' or mode == 'overran'
local overran = mode == 'overran' and {class = 'horizon.worker.JobTimeout',
  message = 'job ran past its timeout and its hard timeout; its supervisor stopped its worker'} or nil
local k = tonumber(ARGV[6])
local keep = {}
for i = 7, 6 + k do keep[ARGV[i]] = true end
for i = 7 + k, #ARGV do
  local q = ARGV[i]
  -- every reservation of the queue: as many as workers x prefetch, and this is rare
  for _, id in ipairs(redis.call('ZRANGE', K.reserved(q), 0, -1)) do
    if not keep[id] then
      local h = redis.call('HMGET', K.job(id), 'worker', 'attempts')
      if h[1] == worker then
        if release and id ~= running then
          if finish_one('release', id, tonumber(h[2]), '0', '') == 'pending' then recovered = recovered + 1 end
        else
          redis.call('ZREM', K.reserved(q), id)
          local failure = id == running and overran or nil
          if recover_one(q, id, 'its worker died', release, failure) then recovered = recovered + 1 end
        end
      end
    end
  end
end
finish_flush()
flush_clock()
return recovered
