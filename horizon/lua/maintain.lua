-- Periodic maintenance over every known queue: move due delayed jobs, recover expired
-- reservations, trim indexes. Returns {promoted, recovered}.
local promoted, recovered = 0, 0
for _, q in ipairs(redis.call('SMEMBERS', K.queues())) do
  promoted = promoted + promote_due(q, 1000)
  recovered = recovered + recover_expired(q, 1000)
end
trim_index('recent', C.trim.recent)
trim_index('pending', C.trim.pending)
trim_index('completed', C.trim.completed)
trim_index('silenced', C.trim.completed)
trim_index('failed', C.trim.failed)
trim_index('recent_failed', C.trim.recent_failed)
for _, tag in ipairs(redis.call('SMEMBERS', K.monitoring())) do
  redis.call('ZREMRANGEBYSCORE', K.tag_jobs(tag), '-inf', '(' .. cutoff(C.trim.monitored))
end
flush_clock()
return {promoted, recovered}
