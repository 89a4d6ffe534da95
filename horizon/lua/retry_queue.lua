-- Retry failed jobs of a queue: ARGV[3] queue, then pairs (failed id, new id). A job is
-- retried when it is failed, belongs to the queue, and has no retry but cancelled ones: a retry
-- that failed is itself a failed job of the list, retried in its place (retrying both doubled a
-- failing job's runs at each round); a failed batch member as a member, as retry.lua does. Returns the new
-- ids created (a new id that exists already as a copy of its failed job counts as created: the
-- call run again after its reply was lost).
local queue = ARGV[3]
local created, retries = {}, {}
for i = 4, #ARGV - 1, 2 do
  local id, new_id = ARGV[i], ARGV[i + 1]
  if redis.call('HGET', K.job(new_id), 'retry_of') == id then
    created[#created + 1] = new_id
  else
    local h = redis.call('HMGET', K.job(id), unpack(RETRY_FIELDS))
    local live = false
    for _, r in ipairs(decode_list(h[10])) do
      if r.status ~= 'cancelled' then live = true end
    end
    if h[1] == 'failed' and h[3] == queue and not live then
      retries[#retries + 1] = {id, new_id, h}
      created[#created + 1] = new_id
    end
  end
end
retry_failed(retries)
flush_clock()
return created
