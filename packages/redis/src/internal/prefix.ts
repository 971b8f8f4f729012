import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Either from "effect/Either"

/** The key prefix both stores share by default; a module of its own so that neither store imports the other. */
export const defaultPrefix = "effect-token"

/** A prefix must not contain `{` or `}`: the stores put their own hash tags around it. */
export const validPrefix = (prefix: string): boolean => prefix.length > 0 && !/[{}]/.test(prefix)

/** `REDIS_TOKEN_PREFIX`, as every store reads it: one prefix for the tokens, refresh tokens and sessions of a service. */
export const prefixConfig: Config.Config<string> = Config.string("REDIS_TOKEN_PREFIX").pipe(
  Config.withDefault(defaultPrefix),
  Config.mapOrFail((prefix) =>
    validPrefix(prefix)
      ? Either.right(prefix)
      : Either.left(ConfigError.InvalidData(["REDIS_TOKEN_PREFIX"], "must be non-empty, without { or }"))
  )
)
