import * as Duration from "effect/Duration"
import * as Option from "effect/Option"

/**
 * Parses an HTTP `Retry-After` value (RFC 9110 §10.2.3): delay-seconds or an HTTP-date, relative to `nowMillis`.
 * A date in the past means "now"; anything unparsable is ignored rather than trusted.
 */
export const parseRetryAfter = (header: string | undefined, nowMillis: number): Option.Option<Duration.Duration> => {
  if (header === undefined) return Option.none()
  const value = header.trim()
  if (/^\d+$/.test(value)) return Option.some(Duration.seconds(Number(value)))
  // Only IMF-fixdate and its obsolete forms contain letters and a comma or spaces; reject bare numbers like "1.5".
  if (!/[A-Za-z]/.test(value)) return Option.none()
  const date = Date.parse(value)
  if (Number.isNaN(date)) return Option.none()
  return Option.some(Duration.millis(Math.max(0, date - nowMillis)))
}
