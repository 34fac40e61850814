import type { Redis } from 'ioredis'

/** A Lua script on the connection's client (EVALSHA, with EVAL when Redis does not know it yet); keys are prefixed by ioredis. */
export type Script = (keys: readonly string[], args: ReadonlyArray<string | number>) => Promise<unknown>

export function defineScript (client: Redis, name: string, keyCount: number, lua: string): Script {
  client.defineCommand(name, { numberOfKeys: keyCount, lua })
  const command = (client as unknown as Record<string, (...args: Array<string | number>) => Promise<unknown>>)[name]
  if (command === undefined) throw new Error(`script ${name} was not defined`)
  return async (keys, args) => {
    if (keys.length !== keyCount) throw new Error(`script ${name} takes ${keyCount} keys`)
    return await command.call(client, ...keys, ...args)
  }
}
