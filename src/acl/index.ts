export { createAcl, type Acl, type AclOptions, type PrincipalAcl } from './acl.js'
export { noAppTopics, type AppTopicAcl, type AppTopicDirectory, type AclEntry } from './app-topics.js'
export { covers, hasWildcard } from './topic-match.js'
export { principalMatches } from './principal-match.js'
