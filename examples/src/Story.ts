/**
 * A tiny framework for the demo: a story is a titled list of steps; each step does one thing against the running
 * servers and says in one line what happened. Steps run in order, are numbered across the whole demo, and may
 * read the value of an earlier step (typed, by the step itself).
 *
 * A step checks its own expectation and fails with `StoryFailure` when the world does not behave as told, so the
 * demo doubles as an end-to-end test.
 */
import { Console, Data, Effect } from "effect"

/** What a step reports: one line for the reader, and a value later steps and tests can use. */
export interface Outcome<A> {
  readonly summary: string
  readonly value: A
}

export interface Step<Env, A = unknown, R = never> {
  readonly name: string
  readonly run: (env: Env, results: Results) => Effect.Effect<Outcome<A>, unknown, R>
}

export interface Story<Env, R = never> {
  readonly title: string
  readonly steps: ReadonlyArray<Step<Env, any, R>>
}

/** The values of the steps that have run so far. */
export interface Results {
  /** The value of a step that already ran; a defect if it did not (steps run in order). */
  readonly get: <A>(step: Step<any, A, any>) => A
  readonly has: (step: Step<any, any, any>) => boolean
}

/** A step's expectation did not hold. */
export class StoryFailure extends Data.TaggedError("StoryFailure")<{ readonly message: string }> {}

/** A failing step, with its number and name. */
export class StepFailed extends Data.TaggedError("StepFailed")<{
  readonly step: string
  readonly number: number
  readonly cause: unknown
}> {
  override get message(): string {
    return `step ${this.number} (${this.step}) failed: ${causeMessage(this.cause)}`
  }
}

const causeMessage = (cause: unknown): string => {
  const message = (cause as { message?: unknown } | undefined)?.message
  return typeof message === "string" ? message : String(cause)
}

export const step = <Env, A, R = never>(
  name: string,
  run: (env: Env, results: Results) => Effect.Effect<Outcome<A>, unknown, R>
): Step<Env, A, R> => ({ name, run })

/** Fails the step unless `condition` holds. */
export const expect = (condition: boolean, message: string): Effect.Effect<void, StoryFailure> =>
  condition ? Effect.void : Effect.fail(new StoryFailure({ message }))

/** Runs the stories in order, printing each step's line; stops at the first failing step. */
export const run = <Env, R>(
  stories: ReadonlyArray<Story<Env, R>>,
  env: Env
): Effect.Effect<Results, StepFailed, R> =>
  Effect.gen(function*() {
    const values = new Map<Step<any, any, any>, unknown>()
    const results: Results = {
      get: <A>(s: Step<any, A, any>) => {
        if (!values.has(s)) throw new Error(`step "${s.name}" has not run yet`)
        return values.get(s) as A
      },
      has: (s) => values.has(s)
    }
    let number = 0
    for (const story of stories) {
      yield* Console.log(`\n== ${story.title} ==`)
      for (const s of story.steps) {
        number += 1
        const current = number
        const outcome = yield* s.run(env, results).pipe(
          Effect.mapError((cause) => new StepFailed({ step: s.name, number: current, cause })),
          Effect.tapError((failure) => Console.error(`${current}. ${s.name} -> FAILED: ${causeMessage(failure.cause)}`))
        )
        values.set(s, outcome.value)
        yield* Console.log(`${current}. ${outcome.summary}`)
      }
    }
    return results
  })
