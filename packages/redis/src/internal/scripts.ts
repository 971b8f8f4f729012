import * as RedisClient from "../RedisClient.js"

/*
 * Every script touches only the keys it is given, which share one hash tag: they run on a Cluster too. `GET` and
 * `HGET` of a missing key give `false` in Lua, which no string ARGV equals.
 */

/**
 * KEYS: token, lease. ARGV: owner, expected version, fingerprint, expiry (epoch ms), data, TTL (ms), channel, id.
 * -1: the lease is not (or no longer) the caller's. -2: the record is not at the expected version.
 * Otherwise the new version (the expected one plus one), published as "<id> <version>".
 *
 * A record that is gone is no conflict: its TTL ran out with the token it held (the holder's fetch outlasted the old
 * token: a slow server, a paused process), and the lease, held since the caller read (a lapsed lease never comes
 * back with the same random owner), proves nobody wrote meanwhile. Refusing it would throw away the only new token
 * while every other instance waits for it, and make one of them fetch again.
 */
export const write = RedisClient.script<number>(
  "effect-token/write",
  `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
local stored = redis.call('HGET', KEYS[1], 'v')
local expected = tonumber(ARGV[2])
if stored and tonumber(stored) ~= expected then return -2 end
local version = expected + 1
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', version, 'fp', ARGV[3], 'exp', ARGV[4], 'data', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PUBLISH', ARGV[7], ARGV[8] .. ' ' .. version)
return version
`
)

/**
 * KEYS: token. ARGV: the fingerprints the caller's token may have (one per ring key).
 * Clears the token, keeping the record's version (bumped) and TTL, when its fingerprint is one of them. 1 or 0.
 */
export const clear = RedisClient.script<number>(
  "effect-token/compare-and-clear",
  `
local fp = redis.call('HGET', KEYS[1], 'fp')
if not fp then return 0 end
for i = 1, #ARGV do
  if ARGV[i] == fp then
    redis.call('HDEL', KEYS[1], 'fp', 'exp', 'data')
    redis.call('HINCRBY', KEYS[1], 'v', 1)
    return 1
  end
end
return 0
`
)

/** KEYS: lease. ARGV: owner. Compare-and-delete: 1 when released, 0 when the lease was not the caller's. */
export const release = RedisClient.script<number>(
  "effect-token/release-lease",
  `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`
)

/** KEYS: lease. ARGV: owner, TTL (ms). Extends the lease while its owner still holds it: 1, else 0. */
export const renew = RedisClient.script<number>(
  "effect-token/renew-lease",
  `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`
)

/*
 * A rotating refresh token's record: a hash with `v` (version, counting rotations within one lineage), `data` (the
 * encrypted token), `fp` (its keyed fingerprint), `lineage` (a random id given when a token enters from outside: a
 * configured seed or an explicit `set`; rotations and repairs keep it), `seedfp` (for a lineage that began with a
 * configured seed: that seed's fingerprint), `origin` (`seed`, `set`, `rotation`, `repair`), `at` (Redis time of the
 * write, ms) and, while a spend is unresolved, `sid` (the spender's id) and `sdl` (its deadline, Redis time, ms).
 * Every write publishes "<id> <version>" on the store's channel and returns the node's replica count (for `WAIT`:
 * connected ones, or, in a Cluster, every one the cluster lists for the node, connected or not).
 */

/** Redis time in milliseconds, inside a script (Redis 5+ replicates scripts by effects, so `TIME` is allowed). */
const now = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`

/*
 * The replicas a write should wait for: those connected now, or, in a Cluster, those the cluster lists for this
 * master, whichever is more. A replica whose link is down (a partition, a replica that fell behind) is not connected,
 * and counting only connected ones would skip the WAIT, silently, exactly when the write is not replicated: the
 * cluster still lists it, so the WAIT runs, times out, and the shortfall is said. Outside a Cluster, `CLUSTER MYID`
 * fails (pcall) and only connected replicas count: a standalone master forgets a replica that disconnected.
 */
const replicas = `local info = redis.call('INFO', 'replication')
local replicas = tonumber(string.match(info, 'connected_slaves:(%d+)') or '0')
local myid = redis.pcall('CLUSTER', 'MYID')
if type(myid) == 'string' then
  local listed = redis.pcall('CLUSTER', 'REPLICAS', myid)
  if type(listed) == 'table' and listed.err == nil and #listed > replicas then replicas = #listed end
end`

/**
 * KEYS: record. ARGV: data, fp, lineage, channel, id. Writes the configured first token only where nothing is
 * stored (version 1, origin `seed`). `{1, replicas}`, or `{0, 0}` when a record exists.
 */
export const seedRefreshToken = RedisClient.script<[number, number]>(
  "effect-token/rt-seed",
  `
if redis.call('EXISTS', KEYS[1]) == 1 then return {0, 0} end
${now}
redis.call('HSET', KEYS[1], 'v', 1, 'data', ARGV[1], 'fp', ARGV[2], 'lineage', ARGV[3], 'seedfp', ARGV[2],
  'origin', 'seed', 'at', now)
redis.call('PUBLISH', ARGV[4], ARGV[5] .. ' 1')
${replicas}
return {1, replicas}
`
)

/**
 * KEYS: record. ARGV: data, fp, lineage, channel, id. A token from outside (a login): a new lineage, replacing
 * whatever is stored, spends included. `{version, replicas}`.
 */
export const setRefreshToken = RedisClient.script<[number, number]>(
  "effect-token/rt-set",
  `
${now}
local version = tonumber(redis.call('HGET', KEYS[1], 'v') or '0') + 1
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', version, 'data', ARGV[1], 'fp', ARGV[2], 'lineage', ARGV[3], 'origin', 'set',
  'at', now)
redis.call('PUBLISH', ARGV[4], ARGV[5] .. ' ' .. version)
${replicas}
return {version, replicas}
`
)

/**
 * KEYS: record, lock. ARGV: lock owner, spend id, spend time (ms), lock floor (ms), seed settle (ms), then the
 * fingerprints the caller's token may have (one per ring key).
 *
 * The fence before a refresh is sent, in one step: the lock must be the caller's (and is extended to at least the
 * floor, the time a request may take), the stored token must be the caller's, no other spend may be unresolved,
 * and a freshly seeded or repaired token must have settled (instances that know a newer one get the time to repair
 * the store: after a failover that lost an unresolved spend, its sender's answer is such a newer token).
 * Then the spend is recorded until now + spend time.
 * `{1, version, takeover, lineage, seedfp or '', origin, at}` granted; `{-1}` the lock is not the caller's;
 * `{-2, ms}` pending for ms; `{-3}` stale.
 */
export const spendRefreshToken = RedisClient.script<
  [number, number?, number?, string?, string?, string?, number?]
>(
  "effect-token/rt-spend",
  `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return {-1} end
local r = redis.call('HMGET', KEYS[1], 'v', 'fp', 'sid', 'sdl', 'origin', 'at', 'lineage', 'seedfp')
if not r[1] then return {-3} end
local matches = false
for i = 6, #ARGV do
  if ARGV[i] == r[2] then matches = true end
end
if not matches then return {-3} end
${now}
if (r[5] == 'seed' or r[5] == 'repair') and now - tonumber(r[6]) < tonumber(ARGV[5]) then
  return {-2, tonumber(ARGV[5]) - (now - tonumber(r[6]))}
end
local takeover = 0
if r[3] then
  if tonumber(r[4]) > now then return {-2, tonumber(r[4]) - now} end
  takeover = 1
end
redis.call('HSET', KEYS[1], 'sid', ARGV[2], 'sdl', now + tonumber(ARGV[3]))
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
return {1, tonumber(r[1]), takeover, r[7], r[8] or '', r[5], tonumber(r[6])}
`
)

/**
 * KEYS: record. ARGV: spend id, channel, id, then (for a rotation) data, fp. Resolves the caller's spend with the
 * server's answer: a rotated token becomes the next version; without one the spent token stays. Compare-and-set on
 * the spend: `{-1, 0}` when the spend is no longer the caller's (taken over, replaced, or the record lost).
 * `{version, replicas}`.
 */
export const completeRefreshSpend = RedisClient.script<[number, number]>(
  "effect-token/rt-complete",
  `
if redis.call('HGET', KEYS[1], 'sid') ~= ARGV[1] then return {-1, 0} end
local version = tonumber(redis.call('HGET', KEYS[1], 'v'))
redis.call('HDEL', KEYS[1], 'sid', 'sdl')
if ARGV[4] then
  ${now}
  version = version + 1
  redis.call('HSET', KEYS[1], 'v', version, 'data', ARGV[4], 'fp', ARGV[5], 'origin', 'rotation', 'at', now)
  redis.call('PUBLISH', ARGV[2], ARGV[3] .. ' ' .. version)
end
${replicas}
return {version, replicas}
`
)

/**
 * KEYS: record. ARGV: channel, id. Forgets the token (a logout) but keeps a tombstone: a record that is gone means
 * "lost" to the instances that remember a newer token (they repair it), a tombstone means "forgotten on purpose".
 */
export const clearRefreshToken = RedisClient.script<number>(
  "effect-token/rt-clear",
  `
${now}
local version = tonumber(redis.call('HGET', KEYS[1], 'v') or '0') + 1
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', version, 'lineage', 'cleared', 'origin', 'cleared', 'at', now)
redis.call('PUBLISH', ARGV[1], ARGV[2] .. ' ' .. version)
return version
`
)

/** KEYS: record. ARGV: spend id. Ends the caller's spend without a rotation (withdrawn or rejected): 1, or 0. */
export const endRefreshSpend = RedisClient.script<number>(
  "effect-token/rt-end-spend",
  `
if redis.call('HGET', KEYS[1], 'sid') ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[1], 'sid', 'sdl')
return 1
`
)

/**
 * KEYS: record. ARGV: version, data, fp, lineage, seedfp ('' for none), channel, id, then the fingerprints our
 * configured seed may have (one per ring key).
 *
 * Puts back a token this instance knows to be newer than what is stored: the record is gone (an empty restart), or
 * holds an older version of the same lineage (a failover lost the last writes), or holds a fresh seed of the very
 * token this lineage began with (an empty restart re-seeded from configuration, a token spent long ago). Anything
 * else is another lineage (a new login) and is left alone. `{1, replicas}` repaired, `{0, 0}` not.
 */
export const repairRefreshToken = RedisClient.script<[number, number]>(
  "effect-token/rt-repair",
  `
local r = redis.call('HMGET', KEYS[1], 'v', 'lineage', 'origin', 'fp')
if r[1] then
  local older = r[2] == ARGV[4] and tonumber(r[1]) < tonumber(ARGV[1])
  local staleSeed = false
  if r[3] == 'seed' and ARGV[5] ~= '' then
    for i = 8, #ARGV do
      if ARGV[i] == r[4] then staleSeed = true end
    end
  end
  if not older and not staleSeed then return {0, 0} end
end
${now}
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'data', ARGV[2], 'fp', ARGV[3], 'lineage', ARGV[4], 'origin', 'repair',
  'at', now)
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'seedfp', ARGV[5]) end
redis.call('PUBLISH', ARGV[6], ARGV[7] .. ' ' .. ARGV[1])
${replicas}
return {1, replicas}
`
)

/**
 * KEYS: session record. ARGV: expected version (`""`: the session must not exist, a login), data, TTL (ms).
 * Compare-and-set: the new version, or -1 when the stored version is not the expected one. The TTL is set on every
 * write, so Redis forgets a session when its idle or absolute expiry passes.
 */
export const writeSession = RedisClient.script<number>(
  "effect-token/write-session",
  `
local current = redis.call('HGET', KEYS[1], 'v')
if ARGV[1] == '' then
  if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
elseif current ~= ARGV[1] then
  return -1
end
local version = tonumber(current or '0') + 1
redis.call('HSET', KEYS[1], 'v', version, 'data', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return version
`
)
