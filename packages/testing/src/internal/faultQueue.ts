import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import type * as Fault from "../Fault.js"

/** Faults waiting to be served, in order; each answers one request. */
export interface FaultQueue {
  readonly push: (fault: Fault.Fault, times?: number) => Effect.Effect<void>
  readonly take: Effect.Effect<Option.Option<Fault.Fault>>
  readonly pending: Effect.Effect<number>
  readonly clear: Effect.Effect<void>
}

export const make: Effect.Effect<FaultQueue> = Effect.map(
  Ref.make<ReadonlyArray<Fault.Fault>>([]),
  (ref) => ({
    push: (fault, times = 1) => Ref.update(ref, (queue) => [...queue, ...Array.from({ length: times }, () => fault)]),
    take: Ref.modify(ref, (queue) =>
      queue.length === 0
        ? [Option.none(), queue]
        : [Option.some(queue[0]!), queue.slice(1)]),
    pending: Ref.get(ref).pipe(Effect.map((queue) => queue.length)),
    clear: Ref.set(ref, [])
  })
)
