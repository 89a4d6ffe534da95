-- Clean a queue: remove up to ARGV[6] of its jobs in state ARGV[4] ('completed' | 'failed')
-- that finished more than ARGV[5] seconds ago; ARGV[3] queue. Reads the global index (index
-- scores are microsecond stamps of the transition), oldest first, scanning at most 5 x limit
-- entries per call. Returns {removed, next_score} ('' when the scan reached the cutoff).
local queue, state, grace, limit = ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local from = ARGV[7] ~= '' and ARGV[7] or '-inf'
local index = K.index(state)
local cut = '(' .. cutoff(grace)
local scan = redis.call('ZRANGEBYSCORE', index, from, cut, 'WITHSCORES', 'LIMIT', 0, limit * 5)
local removed = 0
local last = nil
for i = 1, #scan, 2 do
  local id = scan[i]
  last = scan[i + 1]
  local h = redis.call('HMGET', K.job(id), 'queue', 'status')
  if h[1] == queue and h[2] == state then
    if remove_job(id, false) then removed = removed + 1 end
  elseif not h[1] then
    redis.call('ZREM', index, id)  -- expired record: drop the stale index entry
  end
  if removed >= limit then break end
end
if #scan < limit * 5 * 2 and removed < limit then return {removed, ''} end
return {removed, last or ''}
