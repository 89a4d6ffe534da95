-- Retry a failed job: ARGV[3] failed job id, ARGV[4] new job id.
-- Copies the job as a new pending job with retry_of, and records the copy on the original's
-- retried_by list. Returns the new id, or an error reply naming the problem.
local id, new_id = ARGV[3], ARGV[4]
local jk = K.job(id)
local h = redis.call('HMGET', jk, 'status', 'name', 'queue', 'payload', 'tags', 'tries', 'timeout', 'backoff', 'type')
if not h[1] then return redis.error_reply('NOT_FOUND job ' .. id .. ' does not exist') end
if h[1] ~= 'failed' then return redis.error_reply('CONFLICT job ' .. id .. ' is ' .. h[1] .. ', not failed') end
local nk = K.job(new_id)
local score = fmt(stamp())
redis.call('HSET', nk, 'id', new_id, 'name', h[2], 'queue', h[3], 'status', 'pending',
  'payload', h[4], 'tags', h[5], 'attempts', '0', 'tries', h[6], 'timeout', h[7],
  'backoff', h[8], 'pushed_at', ftime(NOW), 'index', score, 'retry_of', id)
if h[9] then redis.call('HSET', nk, 'type', h[9]) end
enqueue(new_id, h[3])
redis.call('ZADD', K.index('recent'), score, new_id)
redis.call('ZADD', K.index('pending'), score, new_id)
index_monitored(new_id, score, h[5])
local retried = decode_list(redis.call('HGET', jk, 'retried_by'))
retried[#retried + 1] = {id = new_id, status = 'pending', retried_at = NOW}
redis.call('HSET', jk, 'retried_by', cjson.encode(retried))
event('job:pending', new_id, h[3], h[2], 'pending', {retry_of = id})
flush_clock()
return new_id
