/*
 * Client authentication at the token endpoint (RFC 6749 §2.3): `client_secret_basic`, `client_secret_post`, or a
 * public client's bare `client_id`; and, for the test's side, the `ClientAuth` that passes it.
 */
import { ClientAuth } from "@effect-token/core"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import type { Client } from "../../TestAuthorizationServer.js"
import { type OAuthFailure, oauthFailure } from "./state.js"

export const findClient = (clients: ReadonlyArray<Client>, clientId: string): Client | undefined =>
  clients.find((client) => client.clientId === clientId)

/** The client a token request authenticates as, or the RFC 6749 §5.2 error a real server would answer. */
export const authenticate = (
  clients: ReadonlyArray<Client>,
  request: HttpServerRequest.HttpServerRequest,
  form: URLSearchParams
): Effect.Effect<Client, OAuthFailure> => {
  const header = request.headers["authorization"]
  const basic = header !== undefined && /^basic /i.test(header) ? parseBasic(header.slice(6).trim()) : undefined
  if (header !== undefined && /^basic /i.test(header) && basic === undefined) {
    return Effect.fail(oauthFailure("invalid_client", "malformed Basic credentials", 401))
  }
  const postId = form.get("client_id")
  const postSecret = form.get("client_secret")
  if (basic !== undefined && postSecret !== null) {
    // RFC 6749 §2.3: a client must not use more than one authentication method per request.
    return Effect.fail(oauthFailure("invalid_request", "more than one client authentication method"))
  }
  const attempt = basic !== undefined
    ? { method: "client_secret_basic" as const, clientId: basic.clientId, secret: basic.secret }
    : postSecret !== null && postId !== null
    ? { method: "client_secret_post" as const, clientId: postId, secret: postSecret }
    : postId !== null
    ? { method: "none" as const, clientId: postId, secret: undefined }
    : undefined
  if (attempt === undefined) return Effect.fail(oauthFailure("invalid_client", "no client authentication", 401))
  if (basic !== undefined && postId !== null && postId !== basic.clientId) {
    return Effect.fail(oauthFailure("invalid_request", "client_id does not match the Basic credentials"))
  }
  const client = findClient(clients, attempt.clientId)
  const failed = oauthFailure("invalid_client", "client authentication failed", 401)
  if (client === undefined) return Effect.fail(failed)
  if (client.clientSecret === undefined) {
    return attempt.method === "none" ? Effect.succeed(client) : Effect.fail(failed)
  }
  const allowed = client.authMethods ?? ["client_secret_basic", "client_secret_post"]
  if (attempt.method === "none" || !allowed.includes(attempt.method)) return Effect.fail(failed)
  return attempt.secret === Redacted.value(client.clientSecret) ? Effect.succeed(client) : Effect.fail(failed)
}

/** RFC 6749 §2.3.1: id and secret are form-encoded before Base64, so they are decoded after it. */
const parseBasic = (encoded: string): { readonly clientId: string; readonly secret: string } | undefined => {
  const decoded = Buffer.from(encoded, "base64").toString("utf8")
  const colon = decoded.indexOf(":")
  if (colon < 0) return undefined
  try {
    const formDecode = (s: string) => decodeURIComponent(s.replace(/\+/g, " "))
    return { clientId: formDecode(decoded.slice(0, colon)), secret: formDecode(decoded.slice(colon + 1)) }
  } catch {
    return undefined
  }
}

/**
 * The `ClientAuth` a configured client passes with: the first client and `client_secret_basic` unless told
 * otherwise; `none` for a public client. Throws for an unknown client id: that is a bug in the test.
 */
export const clientAuthFor = (
  clients: ReadonlyArray<Client>,
  options?: {
    readonly clientId?: string | undefined
    readonly method?: "client_secret_basic" | "client_secret_post" | "none" | undefined
  }
): ClientAuth.ClientAuth => {
  const client = options?.clientId === undefined ? clients[0]! : findClient(clients, options.clientId)
  if (client === undefined) throw new Error(`no client ${options?.clientId} on this server`)
  if (client.clientSecret === undefined || options?.method === "none") {
    return ClientAuth.none({ clientId: client.clientId })
  }
  const credentials = { clientId: client.clientId, clientSecret: client.clientSecret }
  return options?.method === "client_secret_post"
    ? ClientAuth.clientSecretPost(credentials)
    : ClientAuth.clientSecretBasic(credentials)
}
