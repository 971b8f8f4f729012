/*
 * The authorization endpoint's part of the code flow (RFC 6749 §4.1.1, PKCE RFC 7636, OpenID Connect's `nonce`),
 * with the user's consent taken as given: the request is checked as a real server checks it, a single-use code is
 * recorded for it, and the answer is the callback URL the browser would be sent to.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import { randomBytes } from "node:crypto"
import type { Client } from "../../TestAuthorizationServer.js"
import { findClient } from "./clientAuthentication.js"
import type { ServerState } from "./state.js"

export interface AuthorizeOptions {
  /** The user who signs in: the `sub` of the ID token and of the access tokens. Default `test-user`. */
  readonly subject?: string | undefined
  /** Adds `iss` to the callback (RFC 9207), as discovery advertises. Default true. */
  readonly iss?: boolean | undefined
}

/**
 * The callback URL for an authorization request URL. A request with an unknown client or without a `redirect_uri`
 * cannot be answered by a redirect (RFC 6749 §4.1.2.1): it fails with the reason. Other mistakes (no PKCE
 * S256 challenge, a `response_type` other than `code`) come back on the callback as `error`, with the `state`.
 */
export const authorize = (options: {
  readonly issuer: string
  readonly clients: ReadonlyArray<Client>
  readonly state: ServerState
}) =>
(url: string, as: AuthorizeOptions = {}): Effect.Effect<string, string> =>
  Effect.gen(function*() {
    const request = new URL(url, options.issuer)
    const param = (name: string) => request.searchParams.get(name) ?? undefined
    const clientId = param("client_id")
    const redirectUri = param("redirect_uri")
    if (clientId === undefined || findClient(options.clients, clientId) === undefined) {
      return yield* Effect.fail(`unknown client_id ${clientId}`)
    }
    if (redirectUri === undefined) return yield* Effect.fail("no redirect_uri")
    const callback = new URL(redirectUri)
    const state = param("state")
    if (state !== undefined) callback.searchParams.set("state", state)
    if (as.iss !== false) callback.searchParams.set("iss", options.issuer)
    const refuse = (error: string, description: string) => {
      callback.searchParams.set("error", error)
      callback.searchParams.set("error_description", description)
      return callback.toString()
    }
    if (param("response_type") !== "code") return refuse("unsupported_response_type", "only code is supported")
    const codeChallenge = param("code_challenge")
    if (codeChallenge === undefined || param("code_challenge_method") !== "S256") {
      return refuse("invalid_request", "PKCE with code_challenge_method S256 is required")
    }
    const code = `code-${randomBytes(16).toString("base64url")}`
    const scope = param("scope")
    yield* Ref.update(options.state, (s) => ({
      ...s,
      codes: new Map(s.codes).set(code, {
        clientId,
        redirectUri,
        codeChallenge,
        subject: as.subject ?? "test-user",
        scope: scope === undefined || scope.trim() === "" ? Option.none() : Option.some(scope.trim()),
        nonce: param("nonce")
      })
    }))
    callback.searchParams.set("code", code)
    return callback.toString()
  })
