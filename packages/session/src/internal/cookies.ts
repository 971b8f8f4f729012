/**
 * The cookies this package writes, on the application's response: added beside the application's own, never in
 * their place.
 *
 * Platform's `HttpServerResponse` has two places for cookies: one `set-cookie` header (a single value; `Headers`
 * print it redacted) and its `Cookies` (any number, printed with their values). So a cookie with a secret value (a
 * session id, a sealed login) goes in the header, and only on the responses of our own routes, which nothing else
 * writes; every deletion (an empty value) goes in `Cookies`, where it adds to whatever the application set.
 */
import * as Cookies from "@effect/platform/Cookies"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Option from "effect/Option"

/** Whether the response already sets (or deletes) the cookie `name`, in its header or its `Cookies`. */
export const setsCookie = (response: HttpServerResponse.HttpServerResponse, name: string): boolean => {
  if (Option.isSome(Cookies.get(response.cookies, name))) return true
  const header = response.headers["set-cookie"]
  if (header === undefined) return false
  const eq = header.indexOf("=")
  return eq > 0 && header.slice(0, eq).trim() === name
}

/** Adds the deletion of cookie `name`, unless the response sets that cookie itself (a new session replaces it). */
export const expire = (
  response: HttpServerResponse.HttpServerResponse,
  name: string,
  secure: boolean
): HttpServerResponse.HttpServerResponse =>
  setsCookie(response, name)
    ? response
    : HttpServerResponse.expireCookie(response, name, { path: "/", httpOnly: true, secure, sameSite: "lax" })
