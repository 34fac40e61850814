/** Topics Herald itself publishes on (README "Topics"). */

/** Direct push to a user: every installation of the user is subscribed to it. */
export function userInboxTopic (userId: string): string {
  return `users/${userId}/inbox`
}

/** Push to one installation; delivered to that client id only. */
export function installationTopic (installation: { owner: string, id: string }): string {
  return `users/${installation.owner}/installations/${installation.id}`
}
