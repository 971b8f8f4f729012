/*
 * Reading a body that a server controls: at most `limit` bytes are kept, and reading stops (the stream is closed,
 * which releases the connection) as soon as more arrives. Shared by the token, discovery and revocation endpoints
 * (which refuse an answer over their cap) and the authenticated client (which keeps the head of a 401 or 5xx body).
 */
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"

export interface Bounded {
  /** The first `limit` bytes at most. */
  readonly bytes: Uint8Array
  /** Whether the body went on past `limit`. */
  readonly truncated: boolean
}

export const read = <E>(body: Stream.Stream<Uint8Array, E>, limit: number): Effect.Effect<Bounded, E> =>
  Stream.runFoldWhile(
    body,
    { chunks: [] as Array<Uint8Array>, size: 0, truncated: false },
    (acc) => !acc.truncated,
    (acc, chunk) => {
      const room = limit - acc.size
      const kept = chunk.length > room ? chunk.subarray(0, room) : chunk
      if (kept.length > 0) acc.chunks.push(kept)
      return { chunks: acc.chunks, size: acc.size + kept.length, truncated: chunk.length > room }
    }
  ).pipe(
    Effect.map(({ chunks, size, truncated }) => {
      const bytes = new Uint8Array(size)
      let offset = 0
      for (const chunk of chunks) {
        bytes.set(chunk, offset)
        offset += chunk.length
      }
      return { bytes, truncated }
    })
  )
