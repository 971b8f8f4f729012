import { Tracer } from "effect"

/** A span as a test sees it: its name, attributes, events and how it ended. */
export interface CapturedSpan {
  readonly name: string
  readonly attributes: Map<string, unknown>
  readonly events: Array<{ readonly name: string; readonly attributes: Record<string, unknown> | undefined }>
  exit: unknown
}

/** A tracer that keeps every span it is asked for, in order. */
export const capturingTracer = () => {
  const spans: Array<CapturedSpan> = []
  const tracer = Tracer.make({
    span: (name, parent, context, links, startTime, kind) => {
      const captured: CapturedSpan = { name, attributes: new Map(), events: [], exit: undefined }
      spans.push(captured)
      return {
        _tag: "Span",
        name,
        spanId: `span-${spans.length}`,
        traceId: "trace",
        parent,
        context,
        status: { _tag: "Started", startTime },
        attributes: captured.attributes,
        links,
        sampled: true,
        kind,
        attribute: (key, value) => {
          captured.attributes.set(key, value)
        },
        event: (eventName, _time, attributes) => {
          captured.events.push({ name: eventName, attributes })
        },
        end: (_endTime, exit) => {
          captured.exit = exit
        },
        addLinks: () => {}
      } satisfies Tracer.Span
    },
    context: (f) => f()
  })
  return { tracer, spans }
}
