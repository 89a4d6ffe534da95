-- Put a reserved job back without counting the attempt (a worker stopping at once).
-- ARGV[3] id, ARGV[4] attempt. Returns 1 when released.
local id, attempt = ARGV[3], tonumber(ARGV[4])
local jk = K.job(id)
local h = redis.call('HMGET', jk, 'status', 'attempts', 'queue', 'name')
if h[1] ~= 'reserved' or tonumber(h[2]) ~= attempt then return 0 end
redis.call('ZREM', K.reserved(h[3]), id)
redis.call('HINCRBY', jk, 'attempts', -1)
redis.call('HSET', jk, 'status', 'pending')
enqueue(id, h[3])
event('job:pending', id, h[3], h[4], 'pending', {released = true})
return 1
