import { AccessToken, TokenEndpoint } from "@effect-token/core"
import { describe, expect, it } from "@effect/vitest"
import { DateTime, Either, Option, Redacted, Schema } from "effect"

const now = DateTime.unsafeMake(0)
const decode = (body: unknown) =>
  TokenEndpoint.decodeResponseBody(body, { operation: "authorization_code grant", now, defaultLifetime: Option.none() })

describe("the id_token of a token response", () => {
  it("is kept, Redacted, on the AccessToken", () => {
    const token = Either.getOrThrow(
      decode({ access_token: "at", token_type: "Bearer", expires_in: 60, id_token: "eyJ.id-SECRET.sig" })
    )
    expect(Redacted.value(Option.getOrThrow(token.idToken))).toBe("eyJ.id-SECRET.sig")
    expect(`${String(token)}${JSON.stringify(token)}`).not.toContain("id-SECRET")
  })

  it("is absent when the answer has none, and an unusable one is a MalformedResponse naming it", () => {
    expect(Option.isNone(Either.getOrThrow(decode({ access_token: "at", token_type: "Bearer" })).idToken)).toBe(true)
    const error = Either.flip(decode({ access_token: "at", token_type: "Bearer", id_token: "has space" }))
    expect(Either.getOrThrow(error).reason).toMatchObject({ _tag: "MalformedResponse", fields: ["id_token"] })
  })

  it("an encoding stored before the field existed still decodes (no ID token)", () => {
    const encoded = Schema.encodeSync(AccessToken.AccessToken)(
      AccessToken.make({ value: Redacted.make("at"), issuedAt: now })
    )
    const { idToken: _dropped, ...old } = encoded as typeof encoded & { idToken?: unknown }
    expect(Option.isNone(Schema.decodeUnknownSync(AccessToken.AccessToken)(old).idToken)).toBe(true)
  })
})
