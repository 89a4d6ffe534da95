-- Retry a batch's failed jobs: ARGV[3] batch id, then one new id per failed job (in the order of
-- the batch's failed_job_ids). Each failed job still failed is copied as a pending member (retry_of
-- on the copy, retried_by on the original); the batch counts them pending again.
-- Returns the copies' ids, or an error reply 'NOT_FOUND ...'.
local bid = ARGV[3]
local bk = K.batch(bid)
if redis.call('EXISTS', bk) == 0 then return redis.error_reply('NOT_FOUND batch ' .. bid .. ' does not exist') end
local failed = decode_list(redis.call('HGET', bk, 'failed_job_ids'))
local kept, copies = {}, {}
for n, id in ipairs(failed) do
  local new_id = ARGV[3 + n]
  local h = redis.call('HMGET', K.job(id), unpack(RETRY_FIELDS))
  if h[1] == 'failed' and new_id then
    retry_copy(id, new_id, h, {batch_id = bid})
    copies[#copies + 1] = new_id
  else
    kept[#kept + 1] = id
  end
end
if #copies > 0 then batch_reopen(bk, #copies, kept) end
flush_clock()
return copies
