/*
 * The token endpoint: counts the request, serves the next scripted fault if there is one, and otherwise answers
 * as a real server would: form body, client authentication, the grant, and RFC 6749 §5.2 errors.
 */
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Fault from "../../Fault.js"
import type { Client } from "../../TestAuthorizationServer.js"
import type * as FaultQueue from "../faultQueue.js"
import { authenticate } from "./clientAuthentication.js"
import type { Grant } from "./grants.js"
import { noStore, oauthFailure, type ServerState } from "./state.js"

export const make = (options: {
  readonly issuer: string
  readonly clients: ReadonlyArray<Client>
  readonly state: ServerState
  readonly faults: FaultQueue.FaultQueue
  /** The grants served, by `grant_type`. */
  readonly grants: Readonly<Record<string, Grant>>
  /** Runs after the request is counted, before it is answered: a held request waits here. */
  readonly hold: Effect.Effect<void>
}) =>
(request: HttpServerRequest.HttpServerRequest): Effect.Effect<HttpServerResponse.HttpServerResponse> =>
  Effect.gen(function*() {
    const { clients, faults, grants, issuer, state } = options
    const text = yield* Effect.orElseSucceed(request.text, () => "")
    const form = new URLSearchParams(text)
    const grantType = form.get("grant_type") ?? "unknown"
    // Counted before a fault is served: a test asserts on what the client sent, answered or not.
    yield* Ref.update(state, (s) => ({
      ...s,
      requests: { ...s.requests, [grantType]: (s.requests[grantType] ?? 0) + 1 }
    }))
    yield* options.hold
    const fault = yield* faults.take
    if (Option.isSome(fault)) {
      const answer = yield* Fault.toResponse(fault.value)
      if (Option.isSome(answer)) return answer.value
    }
    const contentType = request.headers["content-type"] ?? ""
    const handled = Effect.gen(function*() {
      if (!contentType.toLowerCase().startsWith("application/x-www-form-urlencoded")) {
        return yield* Effect.fail(oauthFailure("invalid_request", "expected a form-encoded body"))
      }
      const client = yield* authenticate(clients, request, form)
      if (grantType === "unknown") return yield* Effect.fail(oauthFailure("invalid_request", "missing grant_type"))
      const grant = Object.hasOwn(grants, grantType) ? grants[grantType] : undefined
      if (grant === undefined) {
        return yield* Effect.fail(oauthFailure("unsupported_grant_type", "this server does not support it"))
      }
      return HttpServerResponse.unsafeJson(yield* grant(client, form), { headers: noStore })
    })
    return yield* Effect.catchAll(handled, (failure) => {
      const headers: Record<string, string> = { ...noStore }
      // RFC 6749 §5.2: a 401 for a client that tried Basic must say which scheme to use.
      if (failure.status === 401 && request.headers["authorization"] !== undefined) {
        headers["www-authenticate"] = `Basic realm="${issuer}"`
      }
      return Effect.succeed(
        HttpServerResponse.unsafeJson({ error: failure.error, error_description: failure.description }, {
          status: failure.status,
          headers
        })
      )
    })
  })
