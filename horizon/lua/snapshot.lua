-- Record one metrics snapshot of every measured job and queue, then reset the per-interval
-- counters (throughput, runtime sum). The runtime estimate, histogram and totals are kept.
-- ARGV[3] waits JSON {queue: seconds}; ARGV[4] job snapshots kept; ARGV[5] queue snapshots kept;
-- ARGV[6] this call's id: the call run again (a client retry after a lost reply) finds its id
-- taken and writes nothing, instead of an empty snapshot of the interval it just reset.
-- A snapshot is JSON {time, throughput, runtime (average seconds)[, wait]} scored by its time.
-- Returns {jobs, queues} snapshotted.
if redis.call('GET', K.snapshot_taken()) == ARGV[6] then return {0, 0} end
redis.call('SET', K.snapshot_taken(), ARGV[6])
local waits = cjson.decode(ARGV[3])
local keep_jobs, keep_queues = tonumber(ARGV[4]), tonumber(ARGV[5])

local function take(metrics_key, snapshots_key, keep, wait)
  local h = redis.call('HMGET', metrics_key, 'throughput', 'runtime')
  local throughput = tonumber(h[1] or '0') or 0
  local runtime_ms = tonumber(h[2] or '0') or 0
  local snap = {throughput = throughput, runtime = 0}
  if throughput > 0 then snap.runtime = runtime_ms / throughput / 1000 end
  if wait then snap.wait = wait end
  -- time spliced in with microseconds (cjson keeps 14 digits): snapshots stay distinct members
  local member = '{"time":' .. NOW_TEXT .. ',' .. string.sub(cjson.encode(snap), 2)
  redis.call('ZADD', snapshots_key, NOW_TEXT, member)
  redis.call('ZREMRANGEBYRANK', snapshots_key, 0, -(keep + 1))
  redis.call('HSET', metrics_key, 'throughput', '0', 'runtime', '0')
end

local jobs = redis.call('SMEMBERS', K.measured_jobs())
for _, name in ipairs(jobs) do
  take(K.job_metrics(name), K.job_snapshots(name), keep_jobs, nil)
end
local queues = redis.call('SMEMBERS', K.measured_queues())
for _, q in ipairs(queues) do
  take(K.queue_metrics(q), K.queue_snapshots(q), keep_queues, tonumber(waits[q] or 0) or 0)
end
return {#jobs, #queues}
