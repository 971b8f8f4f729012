/**
 * Drops three notices `oidc-provider` prints with `console.warn` (its `lib/helpers/attention.js`) that say nothing
 * about a test harness:
 *
 * - "Unsupported runtime": printed when its module is evaluated on Node.js 20 (`lib/index.js` wants 22 LTS or
 *   later; it works on 20.19, which this project supports), so once per test file that loads it;
 * - "a quick start development-only in-memory adapter": printed by every `Provider` created without an adapter
 *   (`lib/helpers/initialize_adapter.js`); the harness is in-memory on purpose;
 * - "a quick start development-only feature devInteractions is enabled": printed by every `Provider` with the
 *   development login and consent pages, which the harness enables only when a test asks for them
 *   (`OidcProvider.Options.devInteractions`) to drive a login.
 *
 * Every other message goes through, oidc-provider's other warnings included. Imported for its effect by
 * `OidcProvider.ts` before `oidc-provider` itself, so the filter is in place when that module is evaluated.
 * Installed once per `console`, however many times this module is evaluated (test runners re-evaluate it per file).
 */

const dropped = [
  "oidc-provider WARNING: Unsupported runtime.",
  "oidc-provider WARNING: a quick start development-only in-memory adapter is used",
  "oidc-provider WARNING: a quick start development-only feature devInteractions is enabled"
] as const

const installed = Symbol.for("@effect-token/testing/oidcProviderNotices")

type Warn = ((...data: Array<unknown>) => void) & { readonly [installed]?: true }

// The message may be wrapped in ANSI colour codes when stderr is a TTY, hence `includes`.
const isDropped = (data: ReadonlyArray<unknown>): boolean =>
  data.length === 1 && typeof data[0] === "string" && dropped.some((notice) => (data[0] as string).includes(notice))

// eslint-disable-next-line no-console -- the one place that wraps console.warn, to drop exactly the notices above
const warn: Warn = console.warn
if (warn[installed] !== true) {
  const filtered: Warn = Object.assign(function(this: unknown, ...data: Array<unknown>) {
    if (!isDropped(data)) warn.apply(this, data)
  }, { [installed]: true as const })
  // eslint-disable-next-line no-console -- see above
  console.warn = filtered
}
