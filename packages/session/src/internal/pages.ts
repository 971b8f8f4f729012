/**
 * What a browser navigation is answered with when sign-in fails or a session is unavailable: a small HTML page (or
 * the application's own), where an API call gets JSON. The pages say only what this package decides (the kind of
 * failure, the login path from configuration), HTML-escaped, under a `Content-Security-Policy` that runs nothing:
 * nothing from the request is reflected.
 */
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Duration from "effect/Duration"
import type { SessionError } from "../SessionError.js"

/** A page load by the browser (Fetch Metadata; else an `Accept` with `text/html` and no XHR marker), any method. */
export const isNavigation = (request: HttpServerRequest.HttpServerRequest): boolean => {
  const mode = request.headers["sec-fetch-mode"]
  if (mode !== undefined) return mode === "navigate"
  if (request.headers["x-requested-with"] !== undefined) return false
  return (request.headers["accept"] ?? "").includes("text/html")
}

const escapes: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;" }
export const escapeHtml = (text: string): string => text.replace(/[&<>"']/g, (c) => escapes[c]!)

/** The `Retry-After` header of an `Unavailable` that knows when to try again. */
export const retryAfterHeaders = (error: SessionError): Record<string, string> =>
  error.reason._tag === "Unavailable" && error.reason.retryAfter !== undefined
    ? { "retry-after": String(Math.ceil(Duration.toSeconds(error.reason.retryAfter))) }
    : {}

const page = (status: number, title: string, body: string, headers: Record<string, string>) =>
  HttpServerResponse.text(
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>` +
      `<body><h1>${escapeHtml(title)}</h1>${body}</body></html>`,
    {
      status,
      contentType: "text/html; charset=utf-8",
      headers: {
        ...headers,
        "cache-control": "no-store",
        "content-security-policy": "default-src 'none'",
        "x-content-type-options": "nosniff"
      }
    }
  )

/** The package's page for a failure: 503 "try again" for `Unavailable`, else 401 with a link to sign in again. */
export const defaultPage = (error: SessionError, loginPath: string): HttpServerResponse.HttpServerResponse =>
  error.reason._tag === "Unavailable"
    ? page(
      503,
      "Temporarily unavailable",
      "<p>Signing in cannot be completed right now. Please try again in a moment.</p>",
      retryAfterHeaders(error)
    )
    : page(
      401,
      "Sign-in did not complete",
      `<p><a href="${escapeHtml(loginPath)}">Sign in again</a></p>`,
      {}
    )

/** The refusal of a cross-site request, as a page or as JSON. */
export const crossSite = (navigation: boolean): HttpServerResponse.HttpServerResponse =>
  navigation
    ? page(403, "Request refused", "<p>This request came from another site, and was refused.</p>", {})
    : HttpServerResponse.unsafeJson({ error: "cross_site_request" }, {
      status: 403,
      headers: { "cache-control": "no-store" }
    })
