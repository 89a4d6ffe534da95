-- Shared helpers prepended to every horizon script (see horizon/scripts.py).
-- ARGV[1] = hash-tagged prefix P; ARGV[2] is unused (a script's own arguments start at ARGV[3]).
-- KEYS[1] is the clock key; it only routes the call to the prefix's cluster slot.
-- Key builders K.<name>(...) are generated from horizon/keys.py:SCHEMA and inserted here, and the
-- settings C are written in as a table constructor (horizon/scripts.py:lua_settings): a script's
-- text, and so its SHA, belongs to one configuration, and no call decodes settings.
local P = ARGV[1]
local C = --@SETTINGS@
--@KEYS@
local T = redis.call('TIME')
local NOW = tonumber(T[1]) + tonumber(T[2]) / 1000000
local NOW_US = tonumber(T[1]) * 1000000 + tonumber(T[2])
local NOW_TEXT = string.format('%.6f', NOW)  -- NOW as stored in job hashes and scores
local NOW_JSON = string.format('%.14g', NOW)  -- NOW as cjson writes it

local function fmt(n) return string.format('%.0f', n) end
local function ftime(n) return string.format('%.6f', n) end

-- Index scores: unique and monotonic microsecond stamps, so paging by score never skips or repeats.
-- A call's first stamp writes NOW_US and reads the last stamp handed out in one SET ... GET (Redis
-- 6.2); flush_clock() writes the call's last stamp when that is not the NOW_US written (several
-- stamps in one call, or NOW_US not past the last one). Every script that stamps must flush.
local _stamp = nil    -- the last stamp of this call
local _written = nil  -- the NOW_US its first stamp wrote
local function stamp()
  local s = NOW_US
  if not _stamp then
    _written = s
    local last = tonumber(redis.call('SET', K.clock(), fmt(s), 'GET') or '0') or 0
    if s <= last then s = last + 1 end
  elseif s <= _stamp then
    s = _stamp + 1
  end
  _stamp = s
  return s
end
local function flush_clock()
  if _stamp and _stamp ~= _written then redis.call('SET', K.clock(), fmt(_stamp)) end
end

-- Append an event to the capped stream. The call's first event, and every 64th after it, trims
-- the stream (MAXLEN ~: whole nodes only); the others skip the check, which costs about as much
-- as the rest of a bulk push's event. The stream exceeds events_max by at most 63 entries plus a
-- node between trims.
local _events = 0
local function xadd_event(name, data)
  if _events % 64 == 0 then
    redis.call('XADD', K.events(), 'MAXLEN', '~', C.events_max, '*', 'event', name, 'data', data)
  else
    redis.call('XADD', K.events(), '*', 'event', name, 'data', data)
  end
  _events = _events + 1
end

local function event(name, id, queue, jobname, status, extra)
  if C.events_max <= 0 then return end
  local data = {job_id = id, queue = queue, name = jobname, status = status}
  if extra then for k, v in pairs(extra) do data[k] = v end end
  -- the time is spliced in as text: formatting one float per call, not per event
  xadd_event(name, '{"time":' .. NOW_JSON .. ',' .. string.sub(cjson.encode(data), 2))
end

local function queue_event(name, queue, extra)
  if C.events_max <= 0 then return end
  local data = {queue = queue, time = NOW}
  if extra then for k, v in pairs(extra) do data[k] = v end end
  xadd_event(name, cjson.encode(data))
end

-- Make a job runnable: into its queue list, plus a wake-up token for an idle worker.
local function enqueue(id, queue)
  redis.call('LPUSH', K.queue(queue), id)
  if redis.call('LLEN', K.wake(queue)) < C.wake_cap then
    redis.call('LPUSH', K.wake(queue), '1')
  end
end

-- Delay a job until at (unix seconds): into its queue's delayed set. An idle worker blocks until
-- the next due time it learned when it last looked; when this job is now the queue's first, a
-- wake-up token makes one worker look again, so the job is not left waiting past its time.
local function delay_job(id, queue, at)
  local key = K.delayed(queue)
  redis.call('ZADD', key, ftime(at), id)
  if redis.call('ZRANGE', key, 0, 0)[1] == id and redis.call('LLEN', K.wake(queue)) < C.wake_cap then
    redis.call('LPUSH', K.wake(queue), '1')
  end
end

local function cutoff(seconds) return fmt((NOW - seconds) * 1000000) end

local function trim_index(list, seconds)
  redis.call('ZREMRANGEBYSCORE', K.index(list), '-inf', '(' .. cutoff(seconds))
end

local function decode_list(json)
  if not json or json == '' or json == '[]' or json == '{}' then return {} end
  return cjson.decode(json)
end

-- Index a job (at its push score) under every monitored tag it carries, trimmed by trim.monitored;
-- the key expires when no job was added for that long. Returns true when some tag is monitored.
local function index_monitored(id, score, tags)
  if not tags or tags == '' or tags == '[]' then return false end
  if redis.call('SCARD', K.monitoring()) == 0 then return false end
  local any = false
  for _, tag in ipairs(decode_list(tags)) do
    if redis.call('SISMEMBER', K.monitoring(), tag) == 1 then
      local key = K.tag_jobs(tag)
      redis.call('ZADD', key, 'NX', score, id)
      redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. cutoff(C.trim.monitored))
      redis.call('EXPIRE', key, C.trim.monitored)
      any = true
    end
  end
  return any
end

-- Seconds a finished job's hash is kept: its list's trim, or trim.monitored when a tag is monitored.
local function keep_for(seconds, monitored)
  if monitored and C.trim.monitored > seconds then return C.trim.monitored end
  return seconds
end

-- Keep the original's retried_by entry in step with the copy's status.
local function update_retried_by(original, copy, status)
  local ok = redis.call('EXISTS', K.job(original))
  if ok == 0 then return end
  local list = decode_list(redis.call('HGET', K.job(original), 'retried_by'))
  for _, entry in ipairs(list) do
    if entry.id == copy then entry.status = status end
  end
  if #list > 0 then redis.call('HSET', K.job(original), 'retried_by', cjson.encode(list)) end
end

local BUCKETS = {1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000}
local function bucket_of(ms)
  for i, b in ipairs(BUCKETS) do if ms <= b then return i end end
  return #BUCKETS + 1
end

-- Sorted-set writes of the jobs a script finishes or reserves, gathered per key and written with
-- one ZREM and one ZADD per key by flush_indexes() (each redis.call costs a few microseconds).
-- Whoever gathers flushes before the script returns: reserve() itself, finish.lua via finish_flush().
local _zrems = {}
local _zadds = {}
local function flush_indexes()
  for key, members in pairs(_zrems) do redis.call('ZREM', key, unpack(members)) end
  for key, pairs_ in pairs(_zadds) do redis.call('ZADD', key, unpack(pairs_)) end
  _zrems = {}
  _zadds = {}
end
local function zrem_later(key, member)
  local t = _zrems[key]
  if not t then t = {}; _zrems[key] = t end
  t[#t + 1] = member
  if #t >= 1000 then flush_indexes() end
end
local function zadd_later(key, score, member)
  local t = _zadds[key]
  if not t then t = {}; _zadds[key] = t end
  t[#t + 1] = score
  t[#t + 1] = member
  if #t >= 2000 then flush_indexes() end
end

-- Completed jobs' metrics and index trims, gathered while a script finishes jobs and written by
-- finish_flush() at its end: one read and one write per metrics hash per call, not per job
-- (hot path: each redis.call costs a few microseconds).
local _finished = nil
local function finished()
  if not _finished then _finished = {jobs = {}, queues = {}, n = 0, trims = {}} end
  return _finished
end

local function add_runtime(by, key, runtime_ms)
  local runtimes = by[key]
  if not runtimes then runtimes = {}; by[key] = runtimes end
  runtimes[#runtimes + 1] = runtime_ms
end

local function record_metrics(name, queue, runtime_ms)
  local f = finished()
  add_runtime(f.jobs, name, runtime_ms)
  add_runtime(f.queues, queue, runtime_ms)
  f.n = f.n + 1
end

-- Add runtimes (ms, in completion order) to a metrics hash; true on the name's first measurement.
local function write_metric(key, runtimes)
  local fields, counts = {'throughput', 'runtime', 'runtime_total', 'estimate'}, {}
  for _, ms in ipairs(runtimes) do
    local b = 'b' .. bucket_of(ms)
    if not counts[b] then counts[b] = 0; fields[#fields + 1] = b end
    counts[b] = counts[b] + 1
  end
  local h = redis.call('HMGET', key, unpack(fields))
  -- the runtime estimate (ms) survives snapshots: an exponential moving average
  local est, sum = tonumber(h[4] or ''), 0
  for _, ms in ipairs(runtimes) do
    sum = sum + ms
    if est then est = est * 0.8 + ms * 0.2 else est = ms end
  end
  local args = {'throughput', string.format('%d', (tonumber(h[1] or '') or 0) + #runtimes),
    'runtime', string.format('%.3f', (tonumber(h[2] or '') or 0) + sum),
    'runtime_total', string.format('%.3f', (tonumber(h[3] or '') or 0) + sum),
    'estimate', string.format('%.3f', est)}
  for i = 5, #fields do
    args[#args + 1] = fields[i]
    args[#args + 1] = string.format('%d', (tonumber(h[i] or '') or 0) + counts[fields[i]])
  end
  redis.call('HSET', key, unpack(args))
  return not h[4]
end

-- Write what finish_one gathered: metrics per job name and queue, the minute's throughput, and
-- one trim of each index the finished jobs went into.
local function finish_flush()
  flush_indexes()
  local f = _finished
  if not f then return end
  _finished = nil
  for name, runtimes in pairs(f.jobs) do
    if write_metric(K.job_metrics(name), runtimes) then redis.call('SADD', K.measured_jobs(), name) end
  end
  for queue, runtimes in pairs(f.queues) do
    if write_metric(K.queue_metrics(queue), runtimes) then redis.call('SADD', K.measured_queues(), queue) end
  end
  if f.n > 0 then
    local minute = K.throughput(math.floor(NOW / 60))
    if redis.call('INCRBY', minute, f.n) == f.n then redis.call('EXPIRE', minute, 7200) end
  end
  for key, _ in pairs(f.trims) do
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. cutoff(C.trim.completed))
  end
  -- the recent list too: single pushes trim it only now and then (see push_jobs)
  if f.n > 0 then trim_index('recent', C.trim.recent) end
end

-- The batches list forgets a batch whose record is gone (a finished batch is kept trim.failed after
-- it finished), never one that still runs, however old: only entries older than trim.failed can be
-- gone, and at most limit of them are looked at (by batch.lua and maintain.lua).
local function forget_gone_batches(limit)
  for _, old in ipairs(redis.call('ZRANGEBYSCORE', K.batches(), '-inf', '(' .. cutoff(C.trim.failed), 'LIMIT', 0, limit)) do
    if redis.call('EXISTS', K.batch(old)) == 0 then redis.call('ZREM', K.batches(), old) end
  end
end

-- Workflows. A job waiting for a parent (field 'after', listed in the parent's children set) or
-- for its batch (field 'waiting_batch', a then/catch/finally callback) is 'scheduled' in no queue
-- and no delayed set until it is released or cancelled here.
local function is_waiting(id, status, queue)
  return status == 'scheduled' and not redis.call('ZSCORE', K.delayed(queue), id)
end

-- Make a waiting job runnable now (or delayed, when its own run time is still ahead).
local function release_waiting(id)
  local jk = K.job(id)
  local h = redis.call('HMGET', jk, 'status', 'queue', 'name', 'available_at')
  if not is_waiting(id, h[1], h[2]) then return end
  local at = tonumber(h[4] or '')
  if at and at > NOW then
    delay_job(id, h[2], at)
  else
    redis.call('HSET', jk, 'status', 'pending')
    enqueue(id, h[2])
    event('job:pending', id, h[2], h[3], 'pending')
  end
end

-- Cancel one waiting job; true when it was waiting.
local function cancel_waiting(id, reason)
  local jk = K.job(id)
  local h = redis.call('HMGET', jk, 'status', 'queue', 'name')
  if not is_waiting(id, h[1], h[2]) then return false end
  redis.call('ZREM', K.index('pending'), id)
  -- cancelled_by: a workflow did it, so revive_waiting() may undo it (a user's cancel stays)
  redis.call('HSET', jk, 'status', 'cancelled', 'cancelled_at', NOW_TEXT, 'cancelled_by', 'workflow')
  redis.call('EXPIRE', jk, C.trim.completed)
  event('job:cancelled', id, h[2], h[3], 'cancelled', reason)
  return true
end

-- The parent completed: its waiting children become runnable.
local function release_children(parent)
  local ck = K.children(parent)
  local kids = redis.call('SMEMBERS', ck)
  for _, child in ipairs(kids) do release_waiting(child) end
  if #kids > 0 then redis.call('EXPIRE', ck, C.trim.completed) end
end

-- The parent failed for good: its waiting children and their descendants are cancelled.
local function cancel_children(parent)
  local todo = {parent}
  while #todo > 0 do
    local pid = table.remove(todo)
    local ck = K.children(pid)
    for _, child in ipairs(redis.call('SMEMBERS', ck)) do
      if cancel_waiting(child, {parent = pid}) then todo[#todo + 1] = child end
    end
    redis.call('EXPIRE', ck, C.trim.failed)
  end
end

-- Cancel a waiting job and, transitively, the children waiting for it.
local function cancel_waiting_tree(id, reason)
  if cancel_waiting(id, reason) then cancel_children(id) end
end

-- Undo what a workflow cancelled (a batch retried after it finished with failures cancelled its
-- then callback): the job waits again, and so do the descendants cancelled with it. A job a user
-- cancelled (cancel.lua) stays cancelled.
local function revive_waiting(id)
  local todo = {id}
  while #todo > 0 do
    local jid = table.remove(todo)
    local jk = K.job(jid)
    local h = redis.call('HMGET', jk, 'status', 'cancelled_by', 'queue', 'name', 'index')
    if h[1] == 'cancelled' and h[2] == 'workflow' then
      redis.call('HSET', jk, 'status', 'scheduled')
      redis.call('HDEL', jk, 'cancelled_at', 'cancelled_by')
      redis.call('PERSIST', jk)
      if h[5] then redis.call('ZADD', K.index('pending'), h[5], jid) end
      event('job:delayed', jid, h[3], h[4], 'scheduled', {revived = true})
      local ck = K.children(jid)
      redis.call('PERSIST', ck)
      for _, child in ipairs(redis.call('SMEMBERS', ck)) do todo[#todo + 1] = child end
    end
  end
end

-- Every member is done: then (no failures) or catch's cleanup, finally; the batch is kept trim.failed.
local function batch_finish(bk, cb)
  redis.call('HSET', bk, 'finished_at', NOW_TEXT)
  local failed = tonumber(redis.call('HGET', bk, 'failed_jobs') or '0')
  if cb[1] then
    if failed == 0 then release_waiting(cb[1]) else cancel_waiting_tree(cb[1], {batch = 'failed'}) end
  end
  if cb[2] and failed == 0 then cancel_waiting_tree(cb[2], {batch = 'succeeded'}) end
  if cb[3] then release_waiting(cb[3]) end
  redis.call('EXPIRE', bk, C.trim.failed)
end

-- A batch member finished (ok) or failed for good; the first failure releases the catch job.
local function batch_member_done(bid, id, ok)
  local bk = K.batch(bid)
  if redis.call('EXISTS', bk) == 0 then return end
  local pending = redis.call('HINCRBY', bk, 'pending_jobs', -1)
  local cb = redis.call('HMGET', bk, 'then_id', 'catch_id', 'finally_id')
  if not ok then
    local failed = redis.call('HINCRBY', bk, 'failed_jobs', 1)
    local ids = decode_list(redis.call('HGET', bk, 'failed_job_ids'))
    ids[#ids + 1] = id
    redis.call('HSET', bk, 'failed_job_ids', cjson.encode(ids))
    if failed == 1 and cb[2] then release_waiting(cb[2]) end
  end
  if pending <= 0 then batch_finish(bk, cb) end
end

-- Called when a job completes (ok) or fails for good: continuations and batch counts.
-- bid: the job's batch_id when the caller read it (false: none), nil to read it here;
-- has_children likewise ('has_children' is set on a job when a child waits for it).
local function workflow_done(id, ok, bid, has_children)
  if bid == nil then bid = redis.call('HGET', K.job(id), 'batch_id') end
  if has_children == false then  -- read by the caller: nobody waits for this job
  elseif ok then release_children(id) else cancel_children(id) end
  if bid then batch_member_done(bid, id, ok) end
end

-- A job that will not run again: failed list, failed tags, metrics, event.
local function fail_final(id, queue, name, exception)
  local jk = K.job(id)
  local score = fmt(stamp())
  redis.call('HSET', jk, 'status', 'failed', 'failed_at', NOW_TEXT, 'exception', exception)
  local th = redis.call('HMGET', jk, 'tags', 'index')
  local monitored = index_monitored(id, th[2] or score, th[1])
  redis.call('ZREM', K.index('pending'), id)
  redis.call('ZADD', K.index('failed'), score, id)
  redis.call('ZADD', K.index('recent_failed'), score, id)
  redis.call('ZADD', K.queue_index(queue, 'failed'), score, id)
  for _, tag in ipairs(decode_list(th[1])) do
    local key = K.tag_failed(tag)
    redis.call('ZADD', key, score, id)
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. cutoff(C.trim.failed))
    redis.call('EXPIRE', key, C.trim.failed)
  end
  redis.call('HINCRBY', K.job_metrics(name), 'failed', 1)
  redis.call('HINCRBY', K.queue_metrics(queue), 'failed', 1)
  -- measured from the first failure too: a job that never completes still shows its failures
  redis.call('SADD', K.measured_jobs(), name)
  redis.call('SADD', K.measured_queues(), queue)
  redis.call('EXPIRE', jk, keep_for(C.trim.failed, monitored))
  local original = redis.call('HGET', jk, 'retry_of')
  if original then update_retried_by(original, id, 'failed') end
  workflow_done(id, false)
  event('job:failed', id, queue, name, 'failed')
  trim_index('failed', C.trim.failed)
  trim_index('recent_failed', C.trim.recent_failed)
  redis.call('ZREMRANGEBYSCORE', K.queue_index(queue, 'failed'), '-inf', '(' .. cutoff(C.trim.failed))
end

local function paused(queue) return redis.call('SISMEMBER', K.paused(), queue) == 1 end

-- Scheduled jobs whose time has come go to their queue.
local function promote_due(queue, limit)
  local due = redis.call('ZRANGEBYSCORE', K.delayed(queue), '-inf', NOW_TEXT, 'LIMIT', 0, limit)
  for _, id in ipairs(due) do
    redis.call('ZREM', K.delayed(queue), id)
    local jk = K.job(id)
    if redis.call('HGET', jk, 'status') == 'scheduled' then
      redis.call('HSET', jk, 'status', 'pending')
      enqueue(id, queue)
      event('job:pending', id, queue, redis.call('HGET', jk, 'name'), 'pending')
    end
  end
  return #due
end

-- Put back one reservation taken from K.reserved(queue) (its worker died, hung or is gone; why
-- says which for the WorkerLost failure): that attempt counts as a try, except a prefetched job
-- that most likely never started (see below) when it is not known to have been running (ran).
-- failure: the final failure's exception {class, message} (default: WorkerLost, naming why).
local function recover_one(queue, id, why, ran, failure)
  local h = redis.call('HMGET', K.job(id), 'status', 'attempts', 'tries', 'name', 'prefetched', 'lost_prefetched')
  if h[1] ~= 'reserved' then return false end
  if not ran and h[5] == h[2] and tonumber(h[6] or '0') < tonumber(h[3]) then
    -- prefetched by a worker that died: most likely it never started, so the try is not
    -- counted (at most `tries` times, so a job that kills its worker still ends failed)
    redis.call('HINCRBY', K.job(id), 'attempts', -1)
    redis.call('HINCRBY', K.job(id), 'lost_prefetched', 1)
    redis.call('HSET', K.job(id), 'status', 'pending')
    enqueue(id, queue)
    event('job:stalled', id, queue, h[4], 'pending', {attempts = tonumber(h[2]) - 1, prefetched = true})
  elseif tonumber(h[2]) >= tonumber(h[3]) then
    local f = failure or {class = 'WorkerLost', message = 'the worker running attempt ' .. h[2] .. ' was lost (' .. why .. ')'}
    fail_final(id, queue, h[4], cjson.encode({class = f.class, message = f.message, traceback = ''}))
  else
    redis.call('HSET', K.job(id), 'status', 'pending')
    enqueue(id, queue)
    event('job:stalled', id, queue, h[4], 'pending', {attempts = tonumber(h[2])})
  end
  return true
end

-- Reservations past their deadline: the worker died or hung.
local function recover_expired(queue, limit)
  local ids = redis.call('ZRANGEBYSCORE', K.reserved(queue), '-inf', NOW_TEXT, 'LIMIT', 0, limit)
  for _, id in ipairs(ids) do
    redis.call('ZREM', K.reserved(queue), id)
    recover_one(queue, id, 'reservation expired')
  end
  return #ids
end

-- Sliding-window rate limit: true when another start is allowed now.
local function rate_allows(queue)
  local rl = C.rl[queue]
  if not rl then return true end
  local key = K.ratelimit(queue)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ftime(NOW - rl[2]))
  return redis.call('ZCARD', key) < rl[1]
end

local function rate_record(queue, id)
  local rl = C.rl[queue]
  if not rl then return end
  local key = K.ratelimit(queue)
  redis.call('ZADD', key, NOW_TEXT, id .. ':' .. NOW_TEXT)
  redis.call('PEXPIRE', key, math.ceil(rl[2] * 1000) + 1000)
end

-- Earliest time a job on these queues becomes runnable (delayed jobs, rate-limit window).
-- Expired reservations are not waited for: every reserve and the maintenance task recover them.
local function next_due(queues)
  local best = nil
  for _, q in ipairs(queues) do
    local first = redis.call('ZRANGE', K.delayed(q), 0, 0, 'WITHSCORES')
    if first[2] then
      local s = tonumber(first[2])
      if not best or s < best then best = s end
    end
    local rl = C.rl[q]
    if rl and redis.call('LLEN', K.queue(q)) > 0 then
      local oldest = redis.call('ZRANGE', K.ratelimit(q), 0, 0, 'WITHSCORES')
      if oldest[2] then
        local s = tonumber(oldest[2]) + rl[2]
        if not best or s < best then best = s end
      end
    end
  end
  return best
end

-- Reserve a job popped from queue q and append its 9 reply fields to out; returns its timeout, or
-- nil when it is no longer pending. window is how long the worker may hold it before starting it
-- (a prefetched job waits for the ones before it).
local function take(q, id, window, prefetched, worker, out)
  local jk = K.job(id)
  local h = redis.call('HMGET', jk, 'status', 'name', 'payload', 'tries', 'timeout', 'backoff', 'tags', 'attempts')
  if h[1] ~= 'pending' then return nil end
  local attempts = (tonumber(h[8] or '') or 0) + 1
  local a = string.format('%d', attempts)
  local timeout = tonumber(h[5]) or 0
  if prefetched then  -- which attempt was prefetched (recover_one does not count it)
    redis.call('HSET', jk, 'status', 'reserved', 'reserved_at', NOW_TEXT, 'attempts', a, 'prefetched', a,
      'worker', worker)
  else
    redis.call('HSET', jk, 'status', 'reserved', 'reserved_at', NOW_TEXT, 'attempts', a, 'worker', worker)
  end
  -- whole seconds, rounded up: a small sorted set is a ziplist, whose inserts compare the
  -- scores of every member before them, and a whole number is stored (and compared) as an
  -- integer, not parsed from text each time (a prefetched batch inserts many at once)
  zadd_later(K.reserved(q), fmt(math.ceil(NOW + window + timeout + C.margin)), id)
  rate_record(q, id)
  event('job:reserved', id, q, h[2], 'reserved', {attempts = attempts})
  local n = #out
  out[n + 1], out[n + 2], out[n + 3], out[n + 4], out[n + 5] = id, q, h[2], h[3], a
  out[n + 6], out[n + 7], out[n + 8], out[n + 9] = h[4], h[5], h[6], h[7]
  return timeout
end

-- Prefetch only for queues of short jobs: a prefetched job waits for the ones before it.
local function prefetchable(q)
  local est = tonumber(redis.call('HGET', K.queue_metrics(q), 'estimate') or '')
  return est ~= nil and est <= C.prefetch_ms
end

-- Take the next job from the first non-paused queue that has one, in priority order, and up to
-- count - 1 more from the same queue when its jobs are short (prefetch; one round trip for many).
-- woken_by names the queue whose wake token the worker already consumed ('' none, '?' unknown).
-- offset (seconds, default 0): the worker starts these jobs only after ones it already holds, whose
-- timeouts plus grace add up to offset; the first job's window starts there (and counts as prefetched).
-- worker: the reserving worker's name, kept on each job ('worker') so that its supervisor can put
-- back at once what a worker that died held (recover_worker.lua), not when the windows end.
local function reserve(queues, woken_by, count, offset, worker)
  offset = offset or 0
  worker = worker or ''
  for _, q in ipairs(queues) do
    promote_due(q, 100)
    recover_expired(q, 10)
  end
  for _, q in ipairs(queues) do
    if not paused(q) and rate_allows(q) then
      -- a rate limit counts starts, and a job reserved ahead (offset > 0) starts only after the
      -- ones held: leave this queue, and those after it, to a reservation made when it can start
      if offset > 0 and C.rl[q] and redis.call('LLEN', K.queue(q)) > 0 then return {'', ''} end
      while true do
        local id = redis.call('RPOP', K.queue(q))
        if not id then break end
        local out = {}
        local timeout = take(q, id, offset, offset > 0, worker, out)
        if timeout then
          if woken_by == '?' then
            -- pipelined right after the worker's BRPOP, which took a token if one was there
          elseif q ~= woken_by then
            redis.call('RPOP', K.wake(q))
            if woken_by ~= '' then redis.call('LPUSH', K.wake(woken_by), '1') end
          end
          -- never prefetched from a rate-limited queue: each job is counted when it starts
          if (count or 1) > 1 and not C.rl[q] and prefetchable(q) then
            local window = offset + timeout + C.grace
            local taken = 0
            -- one pop for the lot (RPOP with a count: Redis 6.2)
            for _, more_id in ipairs(redis.call('RPOP', K.queue(q), count - 1) or {}) do
              local more_timeout = take(q, more_id, window, true, worker, out)
              if more_timeout then
                window = window + more_timeout + C.grace
                taken = taken + 1
              end
            end
            if taken > 0 then redis.call('RPOP', K.wake(q), taken) end
          end
          flush_indexes()
          return out
        end
      end
      redis.call('DEL', K.wake(q))
    end
  end
  local due = next_due(queues)
  return {'', due and ftime(due) or ''}
end

-- Remove a job record and every index entry naming it (delete, drain, clean); one that had not
-- finished also cancels what waits for it and counts as failed in its batch. from_list: also
-- LREM it from its queue list (O(queue length); drain pops the ids itself). Returns true if it existed.
local JOB_INDEXES = {'recent', 'pending', 'completed', 'silenced', 'failed', 'recent_failed'}
local function remove_job(id, from_list)
  local jk = K.job(id)
  local h = redis.call('HMGET', jk, 'queue', 'name', 'tags', 'status', 'after', 'batch_id')
  if not h[1] then return false end
  local queue = h[1]
  if h[4] ~= 'completed' and h[4] ~= 'failed' and h[4] ~= 'cancelled' then
    -- removed before it finished (drained, or deleted while pending or running), it never will:
    -- as a cancel would, its waiting children are cancelled and its batch counts it failed, so
    -- that no continuation or batch callback waits for it forever
    cancel_children(id)
    redis.call('DEL', K.children(id))
    if h[6] then batch_member_done(h[6], id, false) end
  end
  for _, list in ipairs(JOB_INDEXES) do redis.call('ZREM', K.index(list), id) end
  redis.call('ZREM', K.queue_index(queue, 'completed'), id)
  redis.call('ZREM', K.queue_index(queue, 'failed'), id)
  redis.call('ZREM', K.delayed(queue), id)
  redis.call('ZREM', K.reserved(queue), id)
  if from_list and h[4] == 'pending' then redis.call('LREM', K.queue(queue), 1, id) end
  for _, tag in ipairs(decode_list(h[3])) do
    redis.call('ZREM', K.tag_jobs(tag), id)
    redis.call('ZREM', K.tag_failed(tag), id)
  end
  if h[5] then redis.call('SREM', K.children(h[5]), id) end
  redis.call('DEL', jk)
  event('job:removed', id, queue, h[2], 'removed')
  return true
end

-- Push n jobs whose fields start at ARGV[first], 10 per job (see push.lua). Returns how many were
-- written (an id that exists already is skipped).
-- Per job one HSET and one event; the indexes and queue lists get one write per call.
local function push_jobs(first, n)
  local monitored = nil  -- whether any tag is monitored: asked once, when a job has tags
  local pushed_at = NOW_TEXT
  local scored = {}    -- score, id pairs for the recent and pending indexes
  local runnable = {}  -- queue -> ids made runnable, in push order
  local queues = {}    -- queues in first-seen order
  local pushed = 0     -- jobs written (an id already there is skipped)
  for i = 0, n - 1 do
    local b = first + i * 10
    local id, name, queue, payload, tags = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
    local available_at = tonumber(ARGV[b + 8])
    local jk = K.job(id)
    -- an id already pushed is left alone: a call run again after its reply was lost (a client's
    -- retry) must not reset a job that a worker may hold by then
    if redis.call('EXISTS', jk) == 0 then
      pushed = pushed + 1
      local score = fmt(stamp())
      local status = 'pending'
      if available_at and available_at > NOW then status = 'scheduled' end
      redis.call('HSET', jk, 'id', id, 'name', name, 'queue', queue, 'status', status,
        'payload', payload, 'tags', tags, 'attempts', '0', 'tries', ARGV[b + 5],
        'timeout', ARGV[b + 6], 'backoff', ARGV[b + 7], 'pushed_at', pushed_at, 'index', score)
      if ARGV[b + 9] ~= '' then
        for k, v in pairs(cjson.decode(ARGV[b + 9])) do redis.call('HSET', jk, k, tostring(v)) end
      end
      if not runnable[queue] then runnable[queue] = {}; queues[#queues + 1] = queue end
      if status == 'scheduled' then
        redis.call('HSET', jk, 'available_at', ftime(available_at))
        delay_job(id, queue, available_at)
      else
        local ids = runnable[queue]
        ids[#ids + 1] = id
      end
      scored[#scored + 1] = score
      scored[#scored + 1] = id
      if tags ~= '[]' and tags ~= '' then
        if monitored == nil then monitored = redis.call('SCARD', K.monitoring()) > 0 end
        if monitored then index_monitored(id, score, tags) end
      end
      event(status == 'pending' and 'job:pending' or 'job:delayed', id, queue, name, status)
    end
  end
  if #scored > 0 then
    redis.call('ZADD', K.index('recent'), unpack(scored))
    redis.call('ZADD', K.index('pending'), unpack(scored))
  end
  for _, queue in ipairs(queues) do
    redis.call('SADD', K.queues(), queue)
    local ids = runnable[queue]
    if #ids > 0 then
      redis.call('LPUSH', K.queue(queue), unpack(ids))
      -- as enqueue() per job: a wake-up token per runnable job, at most wake_cap waiting
      local tokens = math.min(#ids, C.wake_cap - redis.call('LLEN', K.wake(queue)))
      if tokens > 0 then
        local ones = {}
        for t = 1, tokens do ones[t] = '1' end
        redis.call('LPUSH', K.wake(queue), unpack(ones))
      end
    end
  end
  flush_clock()
  -- trimming by age: every bulk call, and about one single push in 32 (the entries a trim removes
  -- are minutes old, so a few calls late changes nothing; maintenance trims them too)
  if n > 1 or NOW_US % 32 == 0 then
    trim_index('recent', C.trim.recent)
    trim_index('pending', C.trim.pending)
  end
  return pushed
end

-- Whether attempt number attempt of job id (h: its status and attempts first) may be finished
-- with outcome: its reservation is still this attempt's, or it was taken back while the attempt
-- ran and the attempt succeeded (the job then leaves its queue or delayed set here).
local function still_ours(h, outcome, id, attempt, queue)
  if h[1] == 'reserved' and tonumber(h[2]) == attempt then return true end
  if outcome == 'completed' and h[1] == 'pending' then
    redis.call('LREM', K.queue(queue), 1, id)
    return true
  end
  if outcome == 'completed' and h[1] == 'scheduled' then
    redis.call('ZREM', K.delayed(queue), id)
    return true
  end
  return false
end

-- Finish one attempt: outcome 'completed' | 'failed' (retried while tries are left) |
-- 'failed_final' | 'release' (put back without counting the attempt: it never ran).
-- detail is the exception JSON (failures) or the job's output. Returns the new status or 'stale'.
local function finish_one(outcome, id, attempt, runtime_text, detail)
  local runtime = tonumber(runtime_text)
  local jk = K.job(id)
  local h = redis.call('HMGET', jk, 'status', 'attempts', 'tries', 'queue', 'name', 'backoff', 'retry_of',
    'tags', 'index', 'batch_id', 'has_children')
  local state = 'stale'
  local queue, name = h[4], h[5]

  if outcome == 'release' then
    if h[1] ~= 'reserved' or tonumber(h[2]) ~= attempt then return 'stale' end
    redis.call('ZREM', K.reserved(queue), id)
    redis.call('HINCRBY', jk, 'attempts', -1)
    redis.call('HSET', jk, 'status', 'pending')
    enqueue(id, queue)
    event('job:pending', id, queue, name, 'pending', {released = true})
    return 'pending'
  end

  if h[1] and still_ours(h, outcome, id, attempt, queue) then
    zrem_later(K.reserved(queue), id)
    if outcome == 'completed' then
      local score = fmt(stamp())
      if detail ~= '' then
        redis.call('HSET', jk, 'status', 'completed', 'completed_at', NOW_TEXT, 'runtime', runtime_text,
          'output', detail)
      else
        redis.call('HSET', jk, 'status', 'completed', 'completed_at', NOW_TEXT, 'runtime', runtime_text)
      end
      zrem_later(K.index('pending'), id)
      local into = K.index(C.silenced[name] and 'silenced' or 'completed')
      zadd_later(into, score, id)
      -- per-queue completed index (jq history by queue, queue detail counts), trimmed like the global one
      local per_queue = K.queue_index(queue, 'completed')
      zadd_later(per_queue, score, id)
      local trims = finished().trims
      trims[per_queue] = true
      trims[into] = true
      record_metrics(name, queue, runtime)
      redis.call('EXPIRE', jk, keep_for(C.trim.completed, index_monitored(id, h[9] or score, h[8])))
      if h[7] then update_retried_by(h[7], id, 'completed') end
      workflow_done(id, true, h[10], h[11])
      event('job:completed', id, queue, name, 'completed', {runtime = runtime})
      state = 'completed'
    else
      local attempts, tries = tonumber(h[2]), tonumber(h[3])
      if outcome == 'failed' and attempts < tries then
        local backoff = decode_list(h[6])
        local delay = tonumber(backoff[math.min(attempts, #backoff)] or 0) or 0
        redis.call('HSET', jk, 'exception', detail)
        if delay > 0 then
          redis.call('HSET', jk, 'status', 'scheduled', 'available_at', ftime(NOW + delay))
          delay_job(id, queue, NOW + delay)
          event('job:delayed', id, queue, name, 'scheduled', {attempts = attempts, delay = delay})
          state = 'scheduled'
        else
          redis.call('HSET', jk, 'status', 'pending')
          enqueue(id, queue)
          event('job:pending', id, queue, name, 'pending', {attempts = attempts})
          state = 'pending'
        end
      else
        fail_final(id, queue, name, detail)
        state = 'failed'
      end
    end
  end
  return state
end

-- A JSON list (cjson writes an empty table as an object).
local function encode_list(list)
  if #list == 0 then return '[]' end
  return cjson.encode(list)
end

-- Failed members of batch key bk were retried (count of them; kept: the failed ids not retried):
-- the batch counts them pending again and is no longer finished; a then callback it cancelled
-- when it finished with failures waits again (it runs if the retried members complete).
local function batch_reopen(bk, count, kept)
  if redis.call('HEXISTS', bk, 'finished_at') == 1 then
    local then_id = redis.call('HGET', bk, 'then_id')
    if then_id then revive_waiting(then_id) end
  end
  redis.call('HINCRBY', bk, 'pending_jobs', count)
  redis.call('HINCRBY', bk, 'failed_jobs', -count)
  redis.call('HSET', bk, 'failed_job_ids', encode_list(kept))
  redis.call('HDEL', bk, 'finished_at')
  redis.call('PERSIST', bk)
end

-- Retry a failed job: copy it as a new pending job (retry_of on the copy, an entry on the
-- original's retried_by list). h is the original's HMGET of RETRY_FIELDS; extra holds further
-- fields for the copy (e.g. batch_id). Returns nothing; does nothing when the copy exists already.
local RETRY_FIELDS = {'status', 'name', 'queue', 'payload', 'tags', 'tries', 'timeout', 'backoff', 'type',
  'retried_by', 'batch_id'}
local function retry_copy(id, new_id, h, extra)
  local nk = K.job(new_id)
  -- made already by this same call, run again after its reply was lost (a client's retry)
  if redis.call('EXISTS', nk) == 1 then return end
  local score = fmt(stamp())
  redis.call('HSET', nk, 'id', new_id, 'name', h[2], 'queue', h[3], 'status', 'pending',
    'payload', h[4], 'tags', h[5], 'attempts', '0', 'tries', h[6], 'timeout', h[7],
    'backoff', h[8], 'pushed_at', NOW_TEXT, 'index', score, 'retry_of', id)
  if h[9] then redis.call('HSET', nk, 'type', h[9]) end
  for k, v in pairs(extra or {}) do redis.call('HSET', nk, k, v) end
  enqueue(new_id, h[3])
  redis.call('ZADD', K.index('recent'), score, new_id)
  redis.call('ZADD', K.index('pending'), score, new_id)
  index_monitored(new_id, score, h[5])
  local retried = decode_list(h[10])
  retried[#retried + 1] = {id = new_id, status = 'pending', retried_at = NOW}
  redis.call('HSET', K.job(id), 'retried_by', cjson.encode(retried))
  event('job:pending', new_id, h[3], h[2], 'pending', {retry_of = id, batch = extra and extra.batch_id})
end

-- Retry failed jobs, each {id, new_id, h} (h: the original's HMGET of RETRY_FIELDS). A failed
-- member that its batch still counts failed is retried as a member: the copy carries the
-- batch_id, and the batch counts it pending again (one batch_reopen per batch). Any other job
-- gets a plain copy.
local function retry_failed(list)
  local counted = {}  -- batch id -> set of the ids it counts failed (false: no such batch)
  local retried = {}  -- batch id -> set of the ids retried as its members
  local batches = {}  -- batch ids in first-retried order
  for _, r in ipairs(list) do
    local id, new_id, h = r[1], r[2], r[3]
    local bid = h[11]
    local member = false
    if bid then
      if counted[bid] == nil then
        counted[bid] = false
        if redis.call('EXISTS', K.batch(bid)) == 1 then
          local set = {}
          for _, f in ipairs(decode_list(redis.call('HGET', K.batch(bid), 'failed_job_ids'))) do set[f] = true end
          counted[bid] = set
        end
      end
      member = counted[bid] and counted[bid][id] and not (retried[bid] and retried[bid][id])
    end
    if member then
      retry_copy(id, new_id, h, {batch_id = bid})
      if not retried[bid] then retried[bid] = {}; batches[#batches + 1] = bid end
      retried[bid][id] = true
    else
      retry_copy(id, new_id, h)
    end
  end
  for _, bid in ipairs(batches) do
    local bk = K.batch(bid)
    local kept, count = {}, 0
    for _, f in ipairs(decode_list(redis.call('HGET', bk, 'failed_job_ids'))) do
      if retried[bid][f] then count = count + 1 else kept[#kept + 1] = f end
    end
    batch_reopen(bk, count, kept)
  end
end
