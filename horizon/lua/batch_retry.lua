-- Retry a batch's failed jobs: ARGV[3] batch id, then one new id per failed job (in the order of
-- the batch's failed_job_ids). Each failed job still failed is copied as a pending member (retry_of
-- on the copy, retried_by on the original); the batch counts them pending again.
-- Returns the copies' ids, or an error reply 'NOT_FOUND ...'.
local bid = ARGV[3]
local bk = K.batch(bid)
if redis.call('EXISTS', bk) == 0 then return redis.error_reply('NOT_FOUND batch ' .. bid .. ' does not exist') end
local failed = decode_list(redis.call('HGET', bk, 'failed_job_ids'))
local kept, copies = {}, {}
for n, id in ipairs(failed) do
  local jk = K.job(id)
  local new_id = ARGV[3 + n]
  local h = redis.call('HMGET', jk, 'status', 'name', 'queue', 'payload', 'tags', 'tries', 'timeout', 'backoff')
  if h[1] == 'failed' and new_id then
    local nk = K.job(new_id)
    local score = fmt(stamp())
    redis.call('HSET', nk, 'id', new_id, 'name', h[2], 'queue', h[3], 'status', 'pending',
      'payload', h[4], 'tags', h[5], 'attempts', '0', 'tries', h[6], 'timeout', h[7],
      'backoff', h[8], 'pushed_at', ftime(NOW), 'index', score, 'retry_of', id, 'batch_id', bid)
    enqueue(new_id, h[3])
    redis.call('ZADD', K.index('recent'), score, new_id)
    redis.call('ZADD', K.index('pending'), score, new_id)
    index_monitored(new_id, score, h[5])
    local retried = decode_list(redis.call('HGET', jk, 'retried_by'))
    retried[#retried + 1] = {id = new_id, status = 'pending', retried_at = NOW}
    redis.call('HSET', jk, 'retried_by', cjson.encode(retried))
    event('job:pending', new_id, h[3], h[2], 'pending', {retry_of = id, batch = bid})
    copies[#copies + 1] = new_id
  else
    kept[#kept + 1] = id
  end
end
if #copies > 0 then
  redis.call('HINCRBY', bk, 'pending_jobs', #copies)
  redis.call('HINCRBY', bk, 'failed_jobs', -#copies)
  redis.call('HSET', bk, 'failed_job_ids', cjson.encode(kept))
  redis.call('HDEL', bk, 'finished_at')
  redis.call('PERSIST', bk)
end
flush_clock()
return copies
