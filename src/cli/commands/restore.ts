import { restoreStore } from '../../store/backup.js'
import { formatShortUsage, type CommandSpec } from '../help.js'

/** `herald restore`: a backup made by `herald backup` (POST /v1/admin/backup) put in place as a data directory's store, with no broker running on it. */
export const restoreCommand: CommandSpec = {
  name: 'restore',
  summary: 'put a backup in place as a data directory\'s store (broker stopped)',
  usage: '<backup> <dataDir>',
  description: 'Copy the store of a backup made by `herald backup` into <dataDir> (its `db`), with the generated secret when the backup has one and <dataDir> has none, then start the broker with that dataDir. Refuses a data directory that holds a store already (move it away first) and a backup that did not complete. Runs on the broker\'s machine, without the broker: no token needed.',
  options: {},
  positionals: [{ name: 'backup', help: 'the backup directory' }, { name: 'dataDir', help: 'the data directory to restore into (new, or without a db)' }],
  async run ({ positionals }) {
    const [backup, dataDir, ...extra] = positionals
    if (backup === undefined || dataDir === undefined || extra.length > 0) {
      process.stderr.write(`<backup> and <dataDir> are needed\n${formatShortUsage(restoreCommand)}`)
      return 2
    }
    try {
      const { entries, bytes } = await restoreStore(backup, dataDir)
      process.stdout.write(`restored ${entries} entries (${bytes} bytes) into ${dataDir}; start the broker with dataDir ${dataDir} (HERALD_DATA_DIR)\n`)
      return 0
    } catch (err) {
      process.stderr.write(`herald: restore failed: ${(err as Error).message}\n`)
      return 1
    }
  },
}
