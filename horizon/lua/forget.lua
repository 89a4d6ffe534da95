-- Forget failed jobs (the job record and every index naming it).
-- ARGV[3] 'one' with ARGV[4] a job id: returns 1 when a failed job was forgotten, 0 when the id is
--   unknown or the job is not failed.
-- ARGV[3] 'all' with ARGV[4] a batch size: forgets up to that many failed jobs, oldest first;
--   returns {forgotten, left in the failed index}.
local mode = ARGV[3]

local function forget(id)
  local status = redis.call('HGET', K.job(id), 'status')
  if status == 'failed' then return remove_job(id, false) end
  -- a record that expired (or changed state) leaves only index entries behind
  local listed = redis.call('ZREM', K.index('failed'), id)
  redis.call('ZREM', K.index('recent_failed'), id)
  return listed == 1 and not status
end

if mode == 'one' then
  return forget(ARGV[4]) and 1 or 0
elseif mode == 'all' then
  local n = 0
  for _, id in ipairs(redis.call('ZRANGE', K.index('failed'), 0, tonumber(ARGV[4]) - 1)) do
    if forget(id) then n = n + 1 end
    redis.call('ZREM', K.index('failed'), id)
  end
  return {n, redis.call('ZCARD', K.index('failed'))}
end
return redis.error_reply('unknown forget mode ' .. tostring(mode))
