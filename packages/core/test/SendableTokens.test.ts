import { AccessToken, AuthHttpClient, TokenCache, TokenSource } from "@effect-token/core"
import { HttpClient, HttpClientResponse } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { DateTime, Duration, Effect, Option, Redacted } from "effect"

/** A source of the user's own that hands out `values` in turn (then `good-token`). */
const customSource = (values: ReadonlyArray<string>) => {
  let fetches = 0
  const source = TokenSource.make({
    key: "custom",
    fetch: Effect.flatMap(DateTime.now, (issuedAt) =>
      Effect.sync(() =>
        AccessToken.make({
          value: Redacted.make(values[fetches++] ?? "good-token"),
          issuedAt,
          expiresAt: Option.some(DateTime.addDuration(issuedAt, Duration.hours(1)))
        })
      ))
  })
  return { source, fetches: () => fetches }
}

describe("only sendable tokens, whatever the source", () => {
  for (const [name, value] of [["empty", ""], ["a space", "a b"], ["a NUL", "tok\u0000en"], ["CJK", "トークン"]]) {
    it.scoped(`a custom source's token with ${name} is MalformedResponse, never cached, never sent`, () =>
      Effect.gen(function*() {
        const { fetches, source } = customSource([value!])
        const cache = yield* TokenCache.make(source, { retry: undefined })
        const sent: Array<string | undefined> = []
        const api = HttpClient.make((request) =>
          Effect.sync(() => {
            sent.push(request.headers["authorization"])
            return HttpClientResponse.fromWeb(request, new Response("ok"))
          })
        )
        const client = AuthHttpClient.authenticate(api, { baseUrl: "https://api.test", tokens: cache })
        const error = yield* Effect.flip(client.get("/x"))
        expect(error._tag === "TokenError" && error.reason).toMatchObject({
          _tag: "MalformedResponse",
          fields: ["value"]
        })
        expect(sent).toEqual([])
        expect((yield* cache.state)._tag).toBe("Empty")
        // Not cached: the next call fetches again and gets a sendable token.
        yield* client.get("/x")
        expect(sent).toEqual(["Bearer good-token"])
        expect(fetches()).toBe(2)
      }))
  }
})
