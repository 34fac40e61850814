import Type, { type Static } from 'typebox'
import type { Principal } from '../../auth/index.js'
import { HeraldError } from '../../errors/index.js'
import type { Installation } from '../../store/installations.js'
import type { HttpContext } from '../context.js'

/** An installation id (its MQTT client id) in a path: the installation and subscription routes. */
export const InstallationId = Type.String({ minLength: 1, maxLength: 128 })
export const InstallationIdParams = Type.Object({ id: InstallationId })
export type InstallationIdParams = Static<typeof InstallationIdParams>

/** May this caller manage installations of `owner`? The owner, services and admins may. */
export function mayManage (principal: Principal, owner: string): boolean {
  return principal.kind === 'user' && (principal.sub === owner || principal.role === 'service' || principal.role === 'admin')
}

/** The installation if the caller may manage it; 404 otherwise, so others' ids stay unknown. */
export async function findOwnInstallation (ctx: Pick<HttpContext, 'installations'>, principal: Principal, id: string): Promise<Installation> {
  const installation = await ctx.installations.get(id)
  if (installation === undefined || !mayManage(principal, installation.owner)) {
    throw new HeraldError('NOT_FOUND', 'no such installation')
  }
  return installation
}
