-- Retry a failed job: ARGV[3] failed job id, ARGV[4] new job id.
-- Copies the job as a new pending job with retry_of, and records the copy on the original's
-- retried_by list. A failed member of a batch is retried as a member: the batch counts it pending
-- again (as batch_retry.lua does for all of them). Returns the new id, or an error reply naming
-- the problem.
local id, new_id = ARGV[3], ARGV[4]
local h = redis.call('HMGET', K.job(id), unpack(RETRY_FIELDS))
if not h[1] then return redis.error_reply('NOT_FOUND job ' .. id .. ' does not exist') end
if h[1] ~= 'failed' then return redis.error_reply('CONFLICT job ' .. id .. ' is ' .. h[1] .. ', not failed') end
retry_failed({{id, new_id, h}})
flush_clock()
return new_id
