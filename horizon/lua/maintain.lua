-- Periodic maintenance over every known queue: move due delayed jobs, recover expired
-- reservations, trim indexes (a queue's own completed and failed indexes too: its finishing jobs
-- trim them, but a queue gone idle would keep counting jobs past their trim for ever).
-- Returns {promoted, recovered}.
local promoted, recovered = 0, 0
local completed_cutoff, failed_cutoff = '(' .. cutoff(C.trim.completed), '(' .. cutoff(C.trim.failed)
for _, q in ipairs(redis.call('SMEMBERS', K.queues())) do
  promoted = promoted + promote_due(q, 1000)
  recovered = recovered + recover_expired(q, 1000)
  redis.call('ZREMRANGEBYSCORE', K.queue_index(q, 'completed'), '-inf', completed_cutoff)
  redis.call('ZREMRANGEBYSCORE', K.queue_index(q, 'failed'), '-inf', failed_cutoff)
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
forget_gone_batches(10)  -- also when no batch is created any more (batch.lua does it per batch)
flush_clock()
return {promoted, recovered}
