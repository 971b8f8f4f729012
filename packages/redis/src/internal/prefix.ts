/** The key prefix both stores share by default; a module of its own so that neither store imports the other. */
export const defaultPrefix = "effect-token"

/** A prefix must not contain `{` or `}`: the stores put their own hash tags around it. */
export const validPrefix = (prefix: string): boolean => prefix.length > 0 && !/[{}]/.test(prefix)
