import type { AccessToken } from "@effect-token/core"
import type { RedisTokenStore } from "@effect-token/redis"
import { KeyRing } from "@effect-token/redis"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, FastCheck as fc, Option, Queue, Redacted } from "effect"
import { randomKey, ring, storeAt, token } from "./support/fixtures.js"
import * as RedisServer from "./support/redisServer.js"

const valueOf = (entry: RedisTokenStore.Entry) => Option.map(entry.token, (t) => Redacted.value(t.value))

describe("RedisTokenStore scripts on a real redis-server", () => {
  it.scopedLive("compare-and-set: a stale version is rejected, a lost lease does not write", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.single
      const { store } = yield* storeAt(server.url, { keyRing: yield* ring("k1") })
      const keys = yield* store.keysFor("source-a")
      expect(keys.token).toBe(`{effect-token:${keys.id}}:token`)
      expect(keys.lease).toBe(`{effect-token:${keys.id}}:lease`)

      const empty = yield* store.read(keys)
      expect(empty).toEqual({ version: 0, token: Option.none(), expiresAt: Option.none(), readable: true })

      const lease = Option.getOrThrow(yield* store.acquireLease(keys, "10 seconds"))
      expect(yield* store.acquireLease(keys, "10 seconds")).toEqual(Option.none())
      const first = yield* token()
      expect(yield* store.write(lease, first, 0)).toEqual({ _tag: "Written", version: 1 })
      const second = yield* token()
      // The writer read version 0 before; the record is at 1 now.
      expect(yield* store.write(lease, second, 0)).toEqual({ _tag: "VersionConflict" })
      expect(valueOf(yield* store.read(keys))).toEqual(Option.some(Redacted.value(first.value)))
      expect(yield* store.write(lease, second, 1)).toEqual({ _tag: "Written", version: 2 })

      // The lease ends (TTL) and another instance takes it: the old holder can neither write nor release.
      expect(yield* store.releaseLease(lease)).toBe(true)
      const other = Option.getOrThrow(yield* store.acquireLease(keys, "10 seconds"))
      expect(yield* store.write(lease, yield* token(), 2)).toEqual({ _tag: "LeaseLost" })
      expect(yield* store.releaseLease(lease)).toBe(false)
      expect(yield* store.releaseLease(other)).toBe(true)
      // No lease at all: no write either.
      expect(yield* store.write(other, yield* token(), 2)).toEqual({ _tag: "LeaseLost" })
      expect(valueOf(yield* store.read(keys))).toEqual(Option.some(Redacted.value(second.value)))

      // A lease that simply expired.
      const short = Option.getOrThrow(yield* store.acquireLease(keys, "50 millis"))
      yield* Effect.sleep("120 millis")
      expect(yield* store.write(short, yield* token(), 2)).toEqual({ _tag: "LeaseLost" })
    }))

  it.scopedLive("compare-and-clear clears only the matching token, keeps the version moving", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.single
      const { store } = yield* storeAt(server.url, { keyRing: yield* ring("k1") })
      const keys = yield* store.keysFor("source-b")
      const lease = Option.getOrThrow(yield* store.acquireLease(keys, "10 seconds"))
      const stored = yield* token()
      yield* store.write(lease, stored, 0)

      expect(yield* store.clear(keys, yield* token())).toBe(false)
      expect((yield* store.read(keys)).version).toBe(1)
      expect(yield* store.clear(keys, stored)).toBe(true)
      const cleared = yield* store.read(keys)
      expect(cleared.version).toBe(2)
      expect(cleared.token).toEqual(Option.none())
      // A second 401 for the same token changes nothing.
      expect(yield* store.clear(keys, stored)).toBe(false)
      // A writer that read version 1 before the clear is stale now.
      expect(yield* store.write(lease, yield* token(), 1)).toEqual({ _tag: "VersionConflict" })
      expect(yield* store.write(lease, yield* token(), 2)).toEqual({ _tag: "Written", version: 3 })
    }))

  it.scopedLive("the record's TTL is the token's remaining lifetime; an expired token is not written", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.single
      const { client, store } = yield* storeAt(server.url, { keyRing: yield* ring("k1") })
      const keys = yield* store.keysFor("source-c")
      const lease = Option.getOrThrow(yield* store.acquireLease(keys, "10 seconds"))
      yield* store.write(lease, yield* token("90 seconds"), 0)
      const pttl = yield* client.send<number>("PTTL", keys.token)
      expect(pttl).toBeGreaterThan(88_000)
      expect(pttl).toBeLessThanOrEqual(90_000)
      const expired = yield* token("-1 second")
      expect((yield* store.write(lease, expired, 1))._tag).toBe("Skipped")
      // The record's TTL runs out while the lease holder fetches: its write lands, the version goes on.
      yield* store.write(lease, yield* token("200 millis"), 1)
      yield* Effect.sleep("400 millis")
      expect((yield* store.read(keys)).version).toBe(0)
      expect(yield* store.write(lease, yield* token("90 seconds"), 2)).toEqual({ _tag: "Written", version: 3 })
      // Still a conflict when the record is there at another version.
      expect(yield* store.write(lease, yield* token("90 seconds"), 2)).toEqual({ _tag: "VersionConflict" })
    }))

  it.scopedLive("a stored value is not readable as plain text, and only decrypts under its own key", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.single
      const { client, store } = yield* storeAt(server.url, { keyRing: yield* ring("k1") })
      const keys = yield* store.keysFor("source-d")
      const lease = Option.getOrThrow(yield* store.acquireLease(keys, "10 seconds"))
      const secret = yield* token("1 minute", "eyJhbGciOiJSUzI1NiJ9.super-secret-token-value.sig")
      yield* store.write(lease, secret, 0)

      // The bytes as redis-server holds them: the hash's fields, and its serialized form.
      const fields = yield* RedisServer.cli(server.port, "HGETALL", keys.token)
      const dump = yield* RedisServer.cli(server.port, "DUMP", keys.token)
      for (const raw of [fields, dump]) {
        expect(raw).not.toContain("super-secret-token-value")
        expect(raw).not.toContain("eyJhbGciOiJSUzI1NiJ9")
        expect(raw).not.toContain("orders:read")
        expect(raw).not.toContain("Bearer")
        expect(raw).not.toContain("{\"")
      }
      expect(fields).toMatch(/v1\.k1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+/)
      // The source key is not in Redis either: keys are named by its hash.
      expect(yield* RedisServer.cli(server.port, "KEYS", "*")).not.toContain("source-d")

      // Moved to another storage key, the ciphertext no longer authenticates.
      const otherKeys = yield* store.keysFor("source-e")
      const data = yield* client.send<string>("HGET", keys.token, "data")
      yield* client.send("HSET", otherKeys.token, "v", 1, "data", data)
      const moved = yield* store.read(otherKeys)
      expect(moved.readable).toBe(false)
      expect(moved.token).toEqual(Option.none())
    }))

  it.scopedLive("key rotation: encrypt with the current key, decrypt with any key of the ring", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.single
      const k1 = { kid: "k1", key: randomKey() }
      const k2 = { kid: "k2", key: randomKey() }
      const old = yield* storeAt(server.url, { keyRing: yield* KeyRing.make([k1]) })
      const adding = yield* storeAt(server.url, { keyRing: yield* KeyRing.make([k1, k2]) })
      const rotated = yield* storeAt(server.url, { keyRing: yield* KeyRing.make([k2, k1]) })
      const keys = yield* old.store.keysFor("rotating")

      const lease = Option.getOrThrow(yield* old.store.acquireLease(keys, "10 seconds"))
      const first = yield* token()
      yield* old.store.write(lease, first, 0)
      // Every stage of the rotation reads what the old key wrote.
      for (const { store } of [adding, rotated]) {
        expect(valueOf(yield* store.read(keys))).toEqual(Option.some(Redacted.value(first.value)))
      }
      const second = yield* token()
      yield* rotated.store.write(lease, second, 1)
      expect(yield* rotated.client.send<string>("HGET", keys.token, "data")).toMatch(/^v1\.k2\./)
      expect(valueOf(yield* adding.store.read(keys))).toEqual(Option.some(Redacted.value(second.value)))
      // An instance that never got the new key cannot read it, and treats the record as absent.
      expect((yield* old.store.read(keys)).readable).toBe(false)
      // Compare-and-clear from an instance with the ring in another order still matches.
      expect(yield* adding.store.clear(keys, second)).toBe(true)
    }))
})

type Command =
  | { readonly _tag: "Acquire"; readonly actor: number }
  | { readonly _tag: "Expire" }
  | { readonly _tag: "ExpireRecord" }
  | { readonly _tag: "Release"; readonly actor: number }
  | { readonly _tag: "Read"; readonly actor: number }
  | { readonly _tag: "Write"; readonly actor: number }
  | { readonly _tag: "Clear"; readonly actor: number; readonly stored: boolean }

const actor = fc.integer({ min: 0, max: 2 })
const command: fc.Arbitrary<Command> = fc.oneof(
  fc.record({ _tag: fc.constant("Acquire" as const), actor }),
  fc.constant({ _tag: "Expire" as const }),
  fc.constant({ _tag: "ExpireRecord" as const }),
  fc.record({ _tag: fc.constant("Release" as const), actor }),
  fc.record({ _tag: fc.constant("Read" as const), actor }),
  { arbitrary: fc.record({ _tag: fc.constant("Write" as const), actor }), weight: 3 },
  fc.record({ _tag: fc.constant("Clear" as const), actor, stored: fc.boolean() })
)

describe("RedisTokenStore scripts, property", () => {
  /*
   * Three instances interleave lease, read, write and clear on one key; a lease may end at any point (its TTL). The
   * store must behave like the model: a write lands only with the lease held and the version read still current (or
   * the record gone: its TTL ran out), and then sets the version read plus one; a clear removes only the token it
   * names.
   */
  it.scopedLive("random interleavings of three instances follow the model", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.single
      const { client, store } = yield* storeAt(server.url, { keyRing: yield* ring("k1") })
      let run = 0
      const check = (commands: ReadonlyArray<Command>) =>
        Effect.gen(function*() {
          const keys = yield* store.keysFor(`property-${run++}`)
          const model = { owner: null as string | null, version: 0, token: null as string | null, exists: false }
          const leases: Array<RedisTokenStore.Lease | undefined> = [undefined, undefined, undefined]
          const seen: Array<number | undefined> = [undefined, undefined, undefined]
          const written: Array<AccessToken.AccessToken> = []
          for (const cmd of commands) {
            switch (cmd._tag) {
              case "Acquire": {
                const lease = yield* store.acquireLease(keys, "1 minute")
                expect(Option.isSome(lease)).toBe(model.owner === null)
                if (Option.isSome(lease)) {
                  leases[cmd.actor] = lease.value
                  model.owner = lease.value.owner
                }
                break
              }
              case "Expire": {
                yield* client.del(keys.lease)
                model.owner = null
                break
              }
              case "ExpireRecord": {
                // The record's TTL (its token's lifetime) ran out.
                yield* client.del(keys.token)
                model.version = 0
                model.token = null
                model.exists = false
                break
              }
              case "Release": {
                const lease = leases[cmd.actor]
                if (lease === undefined) break
                const released = yield* store.releaseLease(lease)
                expect(released).toBe(model.owner === lease.owner)
                if (released) model.owner = null
                break
              }
              case "Read": {
                seen[cmd.actor] = (yield* store.read(keys)).version
                break
              }
              case "Write": {
                const lease = leases[cmd.actor]
                const version = seen[cmd.actor]
                if (lease === undefined || version === undefined) break
                const next = yield* token()
                const result = yield* store.write(lease, next, version)
                if (model.owner !== lease.owner) expect(result).toEqual({ _tag: "LeaseLost" })
                else if (model.exists && version !== model.version) {
                  expect(result).toEqual({ _tag: "VersionConflict" })
                } else {
                  expect(result).toEqual({ _tag: "Written", version: version + 1 })
                  model.version = version + 1
                  model.exists = true
                  model.token = Redacted.value(next.value)
                  written.push(next)
                }
                break
              }
              case "Clear": {
                const target = cmd.stored ? written[written.length - 1] : written[0]
                if (target === undefined) break
                const cleared = yield* store.clear(keys, target)
                expect(cleared).toBe(model.token === Redacted.value(target.value))
                if (cleared) {
                  model.version += 1
                  model.token = null
                }
                break
              }
            }
            const entry = yield* store.read(keys)
            expect(entry.version).toBe(model.version)
            expect(valueOf(entry)).toEqual(Option.fromNullable(model.token))
          }
        })
      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(fc.array(command, { maxLength: 40 }), (commands) => Effect.runPromise(check(commands))),
          { numRuns: 100 }
        )
      )
    }), { timeout: 300_000 })
})

describe("KeyRing", () => {
  it.effect("parses kid:base64 lists and rejects bad ones without echoing keys", () =>
    Effect.sync(() => {
      const good = KeyRing.parse(Redacted.make(`a:${"A".repeat(43)}=, b-2:${"_".repeat(22)}==`))
      expect(good._tag).toBe("Right")
      const secretish = "c2VjcmV0LWtleQ=="
      for (
        const spec of [
          "",
          "nokid",
          `bad kid:${"A".repeat(43)}=`,
          `a:${secretish}`,
          `a:###`,
          `a:${"A".repeat(43)}=,a:${"A".repeat(43)}=`
        ]
      ) {
        const parsed = KeyRing.parse(Redacted.make(spec))
        expect(parsed._tag).toBe("Left")
        if (parsed._tag === "Left") expect(parsed.left).not.toContain(secretish)
      }
    }))

  it.effect("generateKey makes a key make takes; format writes what parse reads back", () =>
    Effect.gen(function*() {
      const current = yield* KeyRing.generateKey("2026-12")
      const previous = yield* KeyRing.generateKey("2026-11")
      expect(current.key.pipe(Redacted.value).length).toBe(32)
      const spec = KeyRing.format([current, previous])
      expect(String(spec)).not.toContain(Redacted.value(spec).slice(8, 20))
      const parsed = KeyRing.parse(spec)
      expect(parsed._tag === "Right" && parsed.right.map((key) => [key.kid, Redacted.value(key.key)])).toEqual([
        ["2026-12", Redacted.value(current.key)],
        ["2026-11", Redacted.value(previous.key)]
      ])
      // A ring from the generated key reads what a ring from its formatted spec wrote.
      const fromSpec = yield* KeyRing.make(parsed._tag === "Right" ? parsed.right : [])
      const generated = yield* KeyRing.make([current])
      expect(yield* generated.decrypt(yield* fromSpec.encrypt("hello", "ad"), "ad")).toBe("hello")
      const invalid = yield* Effect.exit(KeyRing.generateKey("not a kid"))
      expect(invalid._tag === "Failure" && Cause.isDie(invalid.cause)).toBe(true)
    }))

  it.effect("AES-GCM envelopes: fresh IV each time, tampering and a foreign key are rejected", () =>
    Effect.gen(function*() {
      const ring1 = yield* ring("k1")
      const a = yield* ring1.encrypt("hello", "ad")
      const b = yield* ring1.encrypt("hello", "ad")
      expect(a).not.toBe(b)
      expect(yield* ring1.decrypt(a, "ad")).toBe("hello")
      const parts = a.split(".")
      const flipped = parts[3]!.startsWith("A") ? `B${parts[3]!.slice(1)}` : `A${parts[3]!.slice(1)}`
      const tampered = [parts[0], parts[1], parts[2], flipped].join(".")
      expect((yield* Effect.flip(ring1.decrypt(tampered, "ad"))).reason._tag).toBe("Rejected")
      expect((yield* Effect.flip(ring1.decrypt(a, "other"))).reason._tag).toBe("Rejected")
      const ring2 = yield* ring("k2")
      expect((yield* Effect.flip(ring2.decrypt(a, "ad"))).reason._tag).toBe("UnknownKey")
      expect((yield* Effect.flip(ring1.decrypt("garbage", "ad"))).reason._tag).toBe("Malformed")
      expect((yield* ring1.fingerprints("t", "ad")).length).toBe(1)
      expect(yield* ring1.fingerprints("t", "ad")).toEqual(yield* ring1.fingerprints("t", "ad"))
      expect(yield* ring1.fingerprints("t", "ad")).not.toEqual(yield* ring1.fingerprints("t", "ad2"))
    }))
})

describe("RedisTokenStore on a 3-master Cluster", () => {
  it.scopedLive("the scripts run on whichever node holds each key's slot, and writes are published to subscribers", () =>
    Effect.gen(function*() {
      const cluster = yield* RedisServer.cluster
      const { client, store } = yield* storeAt({ nodes: cluster.nodes }, { keyRing: yield* ring("k1") })
      const updates = yield* store.subscribeUpdates
      // Enough keys to land on every master.
      const allKeys = yield* Effect.forEach(Array.from({ length: 12 }, (_, i) => `cluster-source-${i}`), store.keysFor)
      const ranges = yield* client.send<Array<[number, number, [string, number]]>>("CLUSTER", "SLOTS")
      const masters = new Set<number>()
      for (const keys of allKeys) {
        const slot = yield* client.send<number>("CLUSTER", "KEYSLOT", keys.token)
        expect(yield* client.send<number>("CLUSTER", "KEYSLOT", keys.lease)).toBe(slot)
        masters.add(ranges.find(([start, end]) => start <= slot && slot <= end)![2][1])
      }
      expect(masters.size).toBe(3)
      // The subscription is made in the background: wait until a write's update comes through.
      const keys = allKeys[0]!
      let version = 0
      let received: RedisTokenStore.Update | undefined
      while (received === undefined) {
        const lease = Option.getOrThrow(yield* store.acquireLease(keys, "10 seconds"))
        const result = yield* store.write(lease, yield* token(), version)
        expect(result._tag).toBe("Written")
        version += 1
        yield* store.releaseLease(lease)
        received = Option.getOrUndefined(yield* Queue.poll(updates).pipe(Effect.delay("100 millis")))
      }
      expect(received.id).toBe(keys.id)
      for (const keys of allKeys.slice(1)) {
        const lease = Option.getOrThrow(yield* store.acquireLease(keys, "10 seconds"))
        const stored = yield* token()
        expect(yield* store.write(lease, stored, 0)).toEqual({ _tag: "Written", version: 1 })
        expect(yield* store.write(lease, yield* token(), 0)).toEqual({ _tag: "VersionConflict" })
        expect(yield* store.clear(keys, stored)).toBe(true)
        expect(yield* store.releaseLease(lease)).toBe(true)
        const update = yield* Queue.take(updates).pipe(Effect.timeout("5 seconds"))
        expect(update).toEqual({ id: keys.id, version: 1 })
      }
    }))
})
