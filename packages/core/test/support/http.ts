import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { Effect, Ref } from "effect"

/** What a test sees of one request: the URL, the headers, and the body parsed back as a form. */
export interface Captured {
  readonly method: string
  readonly url: string
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
  readonly form: URLSearchParams
}

const decoder = new TextDecoder()

export const capture = (request: HttpClientRequest.HttpClientRequest): Captured => {
  const body = request.body._tag === "Uint8Array" ? decoder.decode(request.body.body) : ""
  return {
    method: request.method,
    url: request.url,
    headers: { ...request.headers },
    body,
    form: new URLSearchParams(body)
  }
}

/** An in-process `HttpClient` answering every request with `respond`, and the requests it saw. */
export const fake = (respond: (request: Captured) => Response | Effect.Effect<Response>) =>
  Effect.gen(function*() {
    const requests = yield* Ref.make<ReadonlyArray<Captured>>([])
    const client = HttpClient.make((request) =>
      Effect.gen(function*() {
        const captured = capture(request)
        yield* Ref.update(requests, (all) => [...all, captured])
        const answer = respond(captured)
        const response = Effect.isEffect(answer) ? yield* answer : answer
        return HttpClientResponse.fromWeb(request, response)
      })
    )
    return { client, requests: Ref.get(requests) }
  })

/** Records what a real client sends. */
export const recording = (client: HttpClient.HttpClient) =>
  Effect.map(Ref.make<ReadonlyArray<Captured>>([]), (requests) => ({
    client: HttpClient.tapRequest(client, (request) => Ref.update(requests, (all) => [...all, capture(request)])),
    requests: Ref.get(requests)
  }))

export const json = (body: unknown, status = 200, headers: Record<string, string> = {}): Response =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } })

export const tokenResponse = (extra: Record<string, unknown> = {}): Response =>
  json({ access_token: "issued-access-token", token_type: "Bearer", expires_in: 300, ...extra })
