-- Record a running job's progress: ARGV[3] id, ARGV[4] progress 0..1. Returns 1 if recorded.
local id = ARGV[3]
local jk = K.job(id)
local h = redis.call('HMGET', jk, 'status', 'queue', 'name')
if h[1] ~= 'reserved' then return 0 end
redis.call('HSET', jk, 'progress', ARGV[4])
event('job:progress', id, h[2], h[3], 'reserved', {progress = tonumber(ARGV[4])})
return 1
