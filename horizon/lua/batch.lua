-- Create a batch: ARGV[3] batch id, ARGV[4] name, ARGV[5] number of member jobs, then for each
-- callback its role ('then' | 'catch' | 'finally') and the 10 job fields of push.lua.
-- Callbacks are written as jobs waiting for the batch ('scheduled', field waiting_batch); the
-- members are pushed next (push.lua, extra batch_id) in the same transaction. Returns the id.
-- A batch id that exists already is this call run again (the client retried a transaction whose
-- reply was lost): nothing is written, since members may have finished since and been counted.
local bid, name, total = ARGV[3], ARGV[4], tonumber(ARGV[5])
local bk = K.batch(bid)
if redis.call('EXISTS', bk) == 1 then return bid end
redis.call('HSET', bk, 'id', bid, 'name', name, 'total_jobs', total, 'pending_jobs', total,
  'failed_jobs', 0, 'failed_job_ids', '[]', 'created_at', NOW_TEXT)
local cb = {}
local i = 6
while i <= #ARGV do
  local role, id, jname, queue = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local jk = K.job(id)
  local score = fmt(stamp())
  redis.call('HSET', jk, 'id', id, 'name', jname, 'queue', queue, 'status', 'scheduled',
    'payload', ARGV[i + 4], 'tags', ARGV[i + 5], 'attempts', '0', 'tries', ARGV[i + 6],
    'timeout', ARGV[i + 7], 'backoff', ARGV[i + 8], 'pushed_at', NOW_TEXT, 'index', score,
    'waiting_batch', bid)
  if ARGV[i + 9] ~= '' then redis.call('HSET', jk, 'available_at', ARGV[i + 9]) end
  if ARGV[i + 10] ~= '' then
    for k, v in pairs(cjson.decode(ARGV[i + 10])) do redis.call('HSET', jk, k, tostring(v)) end
  end
  redis.call('HSET', bk, role .. '_id', id)
  redis.call('SADD', K.queues(), queue)
  redis.call('ZADD', K.index('recent'), score, id)
  redis.call('ZADD', K.index('pending'), score, id)
  index_monitored(id, score, ARGV[i + 5])
  event('job:delayed', id, queue, jname, 'scheduled', {batch = bid, role = role})
  cb[#cb + 1] = role
  i = i + 11
end
redis.call('ZADD', K.batches(), fmt(stamp()), bid)
forget_gone_batches(100)
if total == 0 then
  batch_finish(bk, redis.call('HMGET', bk, 'then_id', 'catch_id', 'finally_id'))
end
flush_clock()
return bid
