-- Change a job that has not run yet (jq.update_job): ARGV[3] id, ARGV[4] JSON object of hash fields
-- to set (name, payload, tries, timeout, backoff, jq), ARGV[5] new due time (unix s) or '' (unchanged).
-- ARGV[6] JSON object of hash fields -> the values the caller read (false = absent): the change is
-- made only if they still hold them (else STALE: another update came in between; read again).
-- Returns the job's status, or an error reply NOT_FOUND / CONFLICT / STALE naming the problem.
local id, fields, due = ARGV[3], cjson.decode(ARGV[4]), tonumber(ARGV[5])
local expect = cjson.decode(ARGV[6] ~= nil and ARGV[6] ~= '' and ARGV[6] or '{}')
local jk = K.job(id)
local h = redis.call('HMGET', jk, 'status', 'queue', 'name', 'after')
if not h[1] then return redis.error_reply('NOT_FOUND job ' .. id .. ' does not exist') end
if h[1] ~= 'pending' and h[1] ~= 'scheduled' then
  return redis.error_reply('CONFLICT job ' .. id .. ' is ' .. h[1] .. '; only jobs that have not run can be changed')
end
for k, v in pairs(expect) do
  if redis.call('HGET', jk, k) ~= v then
    return redis.error_reply('STALE job ' .. id .. ' field ' .. k .. ' changed since it was read')
  end
end
local queue, status = h[2], h[1]
for k, v in pairs(fields) do redis.call('HSET', jk, k, tostring(v)) end
local waiting = h[4] and redis.call('ZSCORE', K.delayed(queue), id) == false and status == 'scheduled'
if due and not waiting then
  if due > NOW then
    if status == 'pending' then redis.call('LREM', K.queue(queue), 1, id) end
    redis.call('HSET', jk, 'status', 'scheduled', 'available_at', ftime(due))
    delay_job(id, queue, due)
    status = 'scheduled'
  elseif status == 'scheduled' then
    redis.call('ZREM', K.delayed(queue), id)
    redis.call('HSET', jk, 'status', 'pending', 'available_at', ftime(due))
    enqueue(id, queue)
    status = 'pending'
  end
elseif due then
  redis.call('HSET', jk, 'available_at', ftime(due))
end
event('job:updated', id, queue, fields.name or h[3], status)
return status
