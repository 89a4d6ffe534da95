-- Cancel a pending or scheduled job and, transitively, the children waiting for it:
-- ARGV[3] id. Returns the number of jobs cancelled, or an error reply 'NOT_FOUND ...' /
-- 'CONFLICT ...' naming the problem.
local id = ARGV[3]
local status = redis.call('HGET', K.job(id), 'status')
if not status then return redis.error_reply('NOT_FOUND job ' .. id .. ' does not exist') end
if status ~= 'pending' and status ~= 'scheduled' then
  return redis.error_reply('CONFLICT job ' .. id .. ' is ' .. status .. '; only pending or scheduled jobs can be cancelled')
end
local todo, n = {id}, 0
while #todo > 0 do
  local cid = table.remove(todo)
  local jk = K.job(cid)
  local h = redis.call('HMGET', jk, 'status', 'queue', 'name', 'after', 'retry_of')
  if h[1] == 'pending' or h[1] == 'scheduled' then
    if h[1] == 'pending' then redis.call('LREM', K.queue(h[2]), 1, cid) end
    redis.call('ZREM', K.delayed(h[2]), cid)
    redis.call('ZREM', K.index('pending'), cid)
    if h[4] then redis.call('SREM', K.children(h[4]), cid) end
    redis.call('HSET', jk, 'status', 'cancelled', 'cancelled_at', NOW_TEXT)
    redis.call('EXPIRE', jk, C.trim.completed)
    if h[5] then update_retried_by(h[5], cid, 'cancelled') end
    event('job:cancelled', cid, h[2], h[3], 'cancelled', cid ~= id and {parent = h[4]} or nil)
    local bid = redis.call('HGET', jk, 'batch_id')
    if bid then batch_member_done(bid, cid, false) end  -- a cancelled member counts as failed
    n = n + 1
    for _, child in ipairs(redis.call('SMEMBERS', K.children(cid))) do todo[#todo + 1] = child end
    redis.call('DEL', K.children(cid))
  end
end
return n
