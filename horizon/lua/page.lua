-- Read one page of a job index, newest first, in one round trip (API reads are O(page)).
-- ARGV[3] index kind: 'index' | 'tag_jobs' | 'tag_failed'; ARGV[4] its list name or tag;
-- ARGV[5] exclusive upper score bound ('+inf' for the first page); ARGV[6] page size.
-- Entries whose job hash has expired are removed from the index and skipped.
-- Returns {total, {id, score, {field, value, ...}}, ...} with total = ZCARD after cleaning.
local kind, name, bound, limit = ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local key
if kind == 'index' then key = K.index(name)
elseif kind == 'tag_jobs' then key = K.tag_jobs(name)
elseif kind == 'tag_failed' then key = K.tag_failed(name)
else return redis.error_reply('unknown index kind ' .. tostring(kind)) end

local out = {0}
local found = 0
-- a few rounds at most: each round asks for what is still missing after skipping expired entries
for _ = 1, 10 do
  local wanted = limit - found
  if wanted <= 0 then break end
  local rows = redis.call('ZREVRANGEBYSCORE', key, bound, '-inf', 'WITHSCORES', 'LIMIT', 0, wanted)
  for i = 1, #rows, 2 do
    local id, score = rows[i], rows[i + 1]
    local h = redis.call('HGETALL', K.job(id))
    if #h == 0 then
      redis.call('ZREM', key, id)
    else
      found = found + 1
      out[#out + 1] = {id, score, h}
    end
    bound = '(' .. score
  end
  if #rows < wanted * 2 then break end
end
out[1] = redis.call('ZCARD', key)
return out
