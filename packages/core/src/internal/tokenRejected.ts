/*
 * The 401 error of the authenticated client, in a module of its own so that `internal/authHttpClient.ts` raises it
 * without importing the public `AuthHttpClient` module at run time (no cycle). `AuthHttpClient.TokenRejected` is it.
 */
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Inspectable from "effect/Inspectable"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import { spanUrl } from "./endpoint.js"

const ChallengeSchema = Schema.Struct({
  scheme: Schema.String,
  params: Schema.Record({ key: Schema.String, value: Schema.String }),
  token68: Schema.optional(Schema.String)
})

const RequestSchema = Schema.declare(
  (u): u is HttpClientRequest.HttpClientRequest => Predicate.hasProperty(u, HttpClientRequest.TypeId)
)
const ResponseSchema = Schema.declare(
  (u): u is HttpClientResponse.HttpClientResponse => Predicate.hasProperty(u, HttpClientResponse.TypeId)
)

/**
 * The token sent in place of a rejected one was rejected too: the endpoint refuses it for a reason a new token does
 * not fix (an audience, a scope, a revoked client). For `rejectionHold` further 401s for it come as {@link Held}.
 *
 * @example
 * ```ts
 * import { AuthHttpClient } from "@effect-token/core"
 *
 * const reason = new AuthHttpClient.RejectedAfterRetry({})
 * ```
 *
 * @since 0.3.0
 * @category reasons
 */
export class RejectedAfterRetry
  extends Schema.TaggedError<RejectedAfterRetry>("@effect-token/core/TokenRejected/RejectedAfterRetry")(
    "RejectedAfterRetry",
    {}
  )
{
  override get message(): string {
    return "a fresh token was rejected too"
  }
}

/**
 * Not retried: this token replaced a rejected one moments ago (within `rejectionHold`) and was rejected since, so
 * it is kept and the call fails at once, rather than throwing away token after token for one endpoint.
 *
 * @example
 * ```ts
 * import { AuthHttpClient } from "@effect-token/core"
 *
 * const reason = new AuthHttpClient.Held({})
 * ```
 *
 * @since 0.3.0
 * @category reasons
 */
export class Held extends Schema.TaggedError<Held>("@effect-token/core/TokenRejected/Held")("Held", {}) {
  override get message(): string {
    return "not retried: a fresh token was rejected moments ago (rejectionHold)"
  }
}

/**
 * Not retried: the request's body cannot be sent twice (a stream). The token was invalidated, so the caller's own
 * retry gets a fresh one.
 *
 * @example
 * ```ts
 * import { AuthHttpClient } from "@effect-token/core"
 *
 * const reason = new AuthHttpClient.NotReplayable({})
 * ```
 *
 * @since 0.3.0
 * @category reasons
 */
export class NotReplayable
  extends Schema.TaggedError<NotReplayable>("@effect-token/core/TokenRejected/NotReplayable")("NotReplayable", {})
{
  override get message(): string {
    return "not retried: the request's body cannot be sent again"
  }
}

/**
 * A DPoP resource server asked for a nonce (RFC 9449 section 9) and refused the request sent with it, or gave no
 * usable nonce, or the request could not be sent again: the token is not at fault and stays cached.
 *
 * @example
 * ```ts
 * import { AuthHttpClient } from "@effect-token/core"
 *
 * const reason = new AuthHttpClient.NonceRefused({})
 * ```
 *
 * @since 0.3.0
 * @category reasons
 */
export class NonceRefused
  extends Schema.TaggedError<NonceRefused>("@effect-token/core/TokenRejected/NonceRefused")("NonceRefused", {})
{
  override get message(): string {
    return "the DPoP nonce challenge was not met"
  }
}

/**
 * @since 0.3.0
 * @category reasons
 */
export const TokenRejectedReason = Schema.Union(RejectedAfterRetry, Held, NotReplayable, NonceRefused)

/**
 * @since 0.3.0
 * @category reasons
 */
export type TokenRejectedReason = typeof TokenRejectedReason.Type

/**
 * The API rejected the token (HTTP 401), and why the call ends here (`reason`): a fresh token was rejected too
 * (`RejectedAfterRetry`), or it was not retried (`Held`, `NotReplayable`, `NonceRefused`). Its tag does not
 * collide with platform's `HttpApiError.Unauthorized`.
 *
 * @example
 * ```ts
 * import { AuthHttpClient } from "@effect-token/core"
 * import { Effect } from "effect"
 *
 * const program = Effect.flatMap(AuthHttpClient.AuthHttpClient, (api) => api.get("/me")).pipe(
 *   Effect.catchTag("TokenRejected", (error) => Effect.logWarning(`rejected: ${error.error ?? "no reason given"}`))
 * )
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class TokenRejected extends Schema.TaggedError<TokenRejected>("@effect-token/core/TokenRejected")(
  "TokenRejected",
  {
    /** The request as the caller built it, without the token. */
    request: RequestSchema,
    /**
     * The 401 answer, body read into memory (64 KB at most), detached from the request that carried the token; the
     * token and the DPoP proofs that request carried are redacted from its headers and body.
     */
    response: ResponseSchema,
    /**
     * The parsed `WWW-Authenticate` challenges, as server text: the token and proofs sent redacted, control
     * characters removed, each part at most 256 characters. The message quotes them, so an API that echoes the
     * `Authorization` header puts no token into it.
     */
    challenges: Schema.Array(ChallengeSchema),
    reason: TokenRejectedReason
  }
) {
  /** Whether the request was sent again with a fresh token before this error (`RejectedAfterRetry`). */
  get retried(): boolean {
    return this.reason._tag === "RejectedAfterRetry"
  }

  /** The HTTP status: always 401. */
  get status(): number {
    return this.response.status
  }

  /** The `error` auth-param of the first challenge that has one, e.g. `invalid_token`. */
  get error(): string | undefined {
    return this.challenges.find((c) => c.params.error !== undefined)?.params.error
  }

  /** The `error_description` auth-param, if the server sent one. */
  get errorDescription(): string | undefined {
    return this.challenges.find((c) => c.params.error_description !== undefined)?.params.error_description
  }

  override get message(): string {
    const reason = this.error === undefined ? "" : `: ${this.error}`
    const description = this.errorDescription === undefined ? "" : ` - ${this.errorDescription}`
    return `${this.request.method} ${spanUrl(this.request.url)} was rejected with HTTP 401${reason}${description} ` +
      `(${this.reason.message})`
  }

  /** Prints what is safe: the request's method and URL without userinfo or query, never headers or the body. */
  override toJSON(): unknown {
    return {
      _tag: this._tag,
      method: this.request.method,
      url: spanUrl(this.request.url),
      status: this.status,
      challenges: this.challenges,
      reason: this.reason._tag
    }
  }

  override [Inspectable.NodeInspectSymbol](): unknown {
    return this.toJSON()
  }

  override toString(): string {
    return `TokenRejected: ${this.message}`
  }
}
