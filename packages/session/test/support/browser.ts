import * as Http from "node:http"

/**
 * One request with node:http rather than `fetch`: undici's `fetch` always sends `Sec-Fetch-Mode: cors`, and a
 * browser's navigation says `navigate`, which the session middleware reads to tell a page from an API call.
 */
const send = (url: string, init: RequestInit): Promise<Response> =>
  new Promise((resolve, reject) => {
    const headers: Record<string, string> = {}
    new Headers(init.headers).forEach((value, key) => {
      headers[key] = value
    })
    const body = init.body === undefined || init.body === null ? undefined : String(init.body)
    const request = Http.request(url, { method: init.method ?? "GET", headers }, (response) => {
      const chunks: Array<Buffer> = []
      response.on("data", (chunk: Buffer) => chunks.push(chunk))
      response.on("end", () => {
        const out = new Headers()
        for (const [key, value] of Object.entries(response.headers)) {
          for (const each of Array.isArray(value) ? value : value === undefined ? [] : [value]) out.append(key, each)
        }
        const status = response.statusCode ?? 500
        const nullBody = status === 204 || status === 304
        resolve(new Response(nullBody ? null : Buffer.concat(chunks), { status, headers: out }))
      })
      response.on("error", reject)
    })
    request.on("error", reject)
    request.end(body)
  })

/**
 * A browser made of `fetch`: one cookie jar per origin, redirects followed by hand (so every hop's cookies are
 * seen), and oidc-provider's devInteractions login and consent forms submitted as a user would.
 */
export class Browser {
  readonly jars = new Map<string, Map<string, string>>()
  /** Every URL visited, in order. */
  readonly visited: Array<string> = []
  /** Everything every answer brought: status line, headers (cookies and locations included) and body, as text. */
  readonly received: Array<string> = []

  cookies(origin: string): Map<string, string> {
    let jar = this.jars.get(origin)
    if (jar === undefined) {
      jar = new Map()
      this.jars.set(origin, jar)
    }
    return jar
  }

  async fetch(url: string, init: RequestInit = {}): Promise<Response> {
    const origin = new URL(url).origin
    const jar = this.cookies(origin)
    const headers = new Headers(init.headers)
    if (jar.size > 0) headers.set("cookie", [...jar].map(([k, v]) => `${k}=${v}`).join("; "))
    this.visited.push(url)
    const response = await send(url, { ...init, headers })
    const headerLines = [...response.headers].map(([key, value]) => `${key}: ${value}`)
    this.received.push([`${response.status} ${url}`, ...headerLines, await response.clone().text()].join("\n"))
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(";")
      const eq = pair!.indexOf("=")
      const name = pair!.slice(0, eq).trim()
      const value = pair!.slice(eq + 1).trim()
      const expired = attributes.some((a) => /^\s*max-age=0\s*$/i.test(a)) ||
        attributes.some((a) => /^\s*expires=Thu, 01 Jan 1970/i.test(a))
      if (expired || value === "") jar.delete(name)
      else jar.set(name, value)
    }
    return response
  }

  /**
   * Goes to `url` and follows redirects and provider forms until a page of neither kind, or until the next hop
   * matches `stopAt` (that URL is returned unvisited).
   */
  async navigate(
    url: string,
    options: { readonly accept?: string; readonly stopAt?: (url: string) => boolean; readonly user?: string } = {}
  ): Promise<{ readonly response: Response; readonly url: string; readonly stopped: boolean }> {
    let current = url
    const navigation = { accept: options.accept ?? "text/html", "sec-fetch-mode": "navigate" }
    let init: RequestInit = { headers: navigation }
    for (let hop = 0; hop < 20; hop++) {
      if (options.stopAt?.(current) === true) {
        return { response: new Response(null, { status: 204 }), url: current, stopped: true }
      }
      const response = await this.fetch(current, init)
      init = { headers: navigation }
      const location = response.headers.get("location")
      if (response.status >= 300 && response.status < 400 && location !== null) {
        current = new URL(location, current).toString()
        continue
      }
      const type = response.headers.get("content-type") ?? ""
      if (response.status === 200 && type.includes("text/html")) {
        const html = await response.text()
        const form = /<form[^>]*action="([^"]+)"[^>]*method="post"/.exec(html)
        const prompt = /name="prompt" value="([^"]+)"/.exec(html)
        if (form !== null && prompt !== null) {
          const body = new URLSearchParams({ prompt: prompt[1]! })
          if (prompt[1] === "login") {
            body.set("login", options.user ?? "alice")
            body.set("password", "any")
          }
          current = new URL(form[1]!.replace(/&amp;/g, "&"), current).toString()
          init = {
            method: "POST",
            body,
            headers: { "content-type": "application/x-www-form-urlencoded", "sec-fetch-mode": "navigate" }
          }
          continue
        }
        return {
          response: new Response(html, { status: response.status, headers: response.headers }),
          url: current,
          stopped: false
        }
      }
      return { response, url: current, stopped: false }
    }
    throw new Error(`too many hops from ${url}`)
  }
}
