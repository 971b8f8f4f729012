import * as RedisClient from "../RedisClient.js"

/*
 * Every script touches only the keys it is given, which share one hash tag: they run on a Cluster too. `GET` and
 * `HGET` of a missing key give `false` in Lua, which no string ARGV equals.
 */

/**
 * KEYS: token, lease. ARGV: owner, expected version, fingerprint, expiry (epoch ms), data, TTL (ms), channel, id.
 * -1: the lease is not (or no longer) the caller's. -2: the record is not at the expected version.
 * Otherwise the new version, published as "<id> <version>".
 */
export const write = RedisClient.script<number>(
  "effect-token/write",
  `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if current ~= tonumber(ARGV[2]) then return -2 end
local version = current + 1
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

/**
 * KEYS: refresh-token record. ARGV: data, mode (`set`, or `seed` to write only where nothing is stored).
 * The new version, or 0 when `seed` found a record.
 */
export const writeRefreshToken = RedisClient.script<number>(
  "effect-token/write-refresh-token",
  `
if ARGV[2] == 'seed' and redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'data', ARGV[1])
return redis.call('HINCRBY', KEYS[1], 'v', 1)
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
