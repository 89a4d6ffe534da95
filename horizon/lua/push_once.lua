-- Push one job unless this occurrence was already pushed: the lock and the push are one step, so
-- exactly one caller across every host dispatches it (a recurring schedule's occurrence).
-- ARGV[3] lock task name, ARGV[4] owner, ARGV[5] lock ms, then the 10 fields of push.lua.
-- Returns 1 when pushed, 0 when another caller had the lock. The lock held by this owner with the
-- job written is this call run again (its reply was lost): 1, and nothing is written.
if not redis.call('SET', K.lock(ARGV[3]), ARGV[4], 'NX', 'PX', ARGV[5]) then
  if redis.call('GET', K.lock(ARGV[3])) == ARGV[4] and redis.call('EXISTS', K.job(ARGV[6])) == 1 then return 1 end
  return 0
end
return push_jobs(6, 1)
