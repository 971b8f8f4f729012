import * as Duration from "effect/Duration"
import * as Option from "effect/Option"

const months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
const month = "(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
const time = "(\\d{2}):(\\d{2}):(\\d{2})"
// RFC 9110 §5.6.7: IMF-fixdate, and the obsolete RFC 850 and asctime forms a recipient must also accept. All GMT.
const imfFixdate = new RegExp(`^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\\d{2}) ${month} (\\d{4}) ${time} GMT$`, "i")
const rfc850 = new RegExp(
  `^(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), (\\d{2})-${month}-(\\d{2}) ${time} GMT$`,
  "i"
)
const asctime = new RegExp(`^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) ${month} ([ \\d]\\d) ${time} (\\d{4})$`, "i")

const utc = (
  year: number,
  monthName: string,
  day: string,
  hours: string,
  minutes: string,
  seconds: string
): number | undefined => {
  const monthIndex = months.indexOf(monthName.toLowerCase())
  const millis = Date.UTC(year, monthIndex, Number(day), Number(hours), Number(minutes), Number(seconds))
  const date = new Date(millis)
  // Reject what Date.UTC would silently roll over (31 Feb, 25:00:00).
  return date.getUTCDate() === Number(day) && date.getUTCHours() === Number(hours) &&
      date.getUTCMinutes() === Number(minutes) && date.getUTCSeconds() === Number(seconds)
    ? millis
    : undefined
}

const parseHttpDate = (value: string, nowMillis: number): number | undefined => {
  let m = imfFixdate.exec(value)
  if (m !== null) return utc(Number(m[3]), m[2]!, m[1]!, m[4]!, m[5]!, m[6]!)
  m = rfc850.exec(value)
  if (m !== null) {
    // A two-digit year more than 50 years ahead is the most recent past year with those digits (RFC 9110 §5.6.7).
    const currentYear = new Date(nowMillis).getUTCFullYear()
    let year = currentYear - (currentYear % 100) + Number(m[3])
    if (year > currentYear + 50) year -= 100
    return utc(year, m[2]!, m[1]!, m[4]!, m[5]!, m[6]!)
  }
  m = asctime.exec(value)
  if (m !== null) return utc(Number(m[6]), m[1]!, m[2]!.trim(), m[3]!, m[4]!, m[5]!)
  return undefined
}

/**
 * Parses an HTTP `Retry-After` value (RFC 9110 §10.2.3): delay-seconds or an HTTP-date, relative to `nowMillis`.
 * A date in the past means "now"; anything unparsable is ignored rather than trusted. Dates are parsed strictly
 * (not with `Date.parse`, which reads "x 2020" as a date and asctime in the host's time zone).
 */
export const parseRetryAfter = (header: string | undefined, nowMillis: number): Option.Option<Duration.Duration> => {
  if (header === undefined) return Option.none()
  const value = header.trim()
  if (/^\d+$/.test(value)) return Option.some(Duration.seconds(Number(value)))
  const date = parseHttpDate(value, nowMillis)
  if (date === undefined) return Option.none()
  return Option.some(Duration.millis(Math.max(0, date - nowMillis)))
}
