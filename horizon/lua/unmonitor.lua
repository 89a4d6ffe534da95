-- Stop monitoring a tag and release its jobs: ARGV[3] tag, ARGV[4] batch size.
-- Each released job's record goes back to its list's expiry (counted from when it finished)
-- unless another monitored tag still keeps it. Returns the entries left (0 = done, key gone).
local tag, batch = ARGV[3], tonumber(ARGV[4])
redis.call('SREM', K.monitoring(), tag)
local key = K.tag_jobs(tag)
local ids = redis.call('ZRANGE', key, 0, batch - 1)
for _, id in ipairs(ids) do
  local jk = K.job(id)
  local h = redis.call('HMGET', jk, 'status', 'completed_at', 'failed_at', 'tags')
  local kept = false
  for _, t in ipairs(decode_list(h[4])) do
    if redis.call('SISMEMBER', K.monitoring(), t) == 1 then kept = true end
  end
  if not kept then
    local since, trim = nil, nil
    if h[1] == 'completed' then since, trim = tonumber(h[2]), C.trim.completed end
    if h[1] == 'failed' then since, trim = tonumber(h[3]), C.trim.failed end
    if since then redis.call('EXPIRE', jk, math.max(1, math.ceil(since + trim - NOW))) end
  end
end
if #ids > 0 then redis.call('ZREM', key, unpack(ids)) end
return redis.call('ZCARD', key)
