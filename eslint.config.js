// Lint as fastify and aedes do: neostandard (standard style, TypeScript aware),
// plus typescript-eslint's type-aware promise rules and import boundaries that
// keep the direction of dependencies one way (CONVENTIONS.md, "Shape").
import neostandard from 'neostandard'

// Packages that only the broker and the session store may know (an aedes
// upgrade stays a change to those folders).
const aedesPackages = ['aedes', 'aedes-packet', 'aedes-persistence', 'aedes-persistence-level', 'mqtt-packet']

const noAedes = {
  group: aedesPackages,
  message: 'Only src/broker and src/store know aedes; go through BrokerPort or a Herald type.'
}
const noTestCode = {
  regex: '^(\\.\\./)+(test|bench)/',
  message: 'Shipped code does not import tests or benchmarks.'
}

// Each file must match exactly one boundary entry: a later entry replaces the
// rule's options of an earlier one instead of merging them.
const boundaries = [
  {
    files: ['plugins/push-core/**'],
    patterns: [noAedes, { regex: '^\\.\\./', message: 'push-core imports nothing of Herald outside itself.' }]
  },
  {
    files: ['plugins/push-fcm/**', 'plugins/push-apns/**'],
    patterns: [noAedes, { regex: '^\\.\\./(?!push-core/)', message: 'A push plugin imports only plugins/push-core (not src/, not another plugin).' }]
  },
  {
    files: ['src/errors/**'],
    patterns: [noAedes, noTestCode, { regex: '^\\.\\./', message: 'src/errors imports nothing of ours.' }]
  },
  {
    files: ['src/config/**'],
    patterns: [noAedes, noTestCode, { regex: '^\\.\\./(?!errors/)', message: 'src/config imports nothing of ours but src/errors.' }]
  },
  {
    files: ['src/auth/**', 'src/acl/**', 'src/buckets/**'],
    patterns: [noAedes, noTestCode, {
      regex: '^\\.\\./(broker|store|relay|http|cli|transport|server)(/|\\.js$)',
      message: 'auth, ACL and bucket rules know nothing of the broker, storage, relay or transports.'
    }]
  },
  {
    files: ['src/store/**'],
    patterns: [noTestCode, {
      regex: '^\\.\\./(broker|relay|http|cli|server)(/|\\.js$)',
      message: 'The store does not import the broker, the relay or the HTTP/CLI layers.'
    }]
  },
  {
    files: ['src/broker/**'],
    patterns: [noTestCode]
  },
  {
    files: ['src/**'],
    ignores: ['src/errors/**', 'src/config/**', 'src/auth/**', 'src/acl/**', 'src/buckets/**', 'src/store/**', 'src/broker/**'],
    patterns: [noAedes, noTestCode]
  }
].map(({ files, ignores, patterns }) => ({
  files,
  ...(ignores ? { ignores } : {}),
  rules: { 'no-restricted-imports': ['error', { patterns }] }
}))

export default [
  ...neostandard({
    ts: true,
    noJsx: true,
    ignores: ['dist/', 'node_modules/', 'bench/results/', 'data/', '.tap/', 'coverage/']
  }),
  {
    rules: {
      // `void promise` marks a promise whose result is handled elsewhere (the
      // escape that no-floating-promises accepts); only as a statement
      'no-void': ['error', { allowAsStatement: true }],
      // several error codes share one branch, each group under a comment
      'no-fallthrough': ['error', { allowEmptyCase: true }],
      // related properties are grouped several to a line
      '@stylistic/object-property-newline': 'off'
    }
  },
  {
    files: ['**/*.ts'],
    rules: {
      // a TypeBox schema and its static type share a name (`const X = Type.Object(…)`,
      // `type X = Static<typeof X>`); tsc reports real redeclarations
      '@typescript-eslint/no-redeclare': 'off',
      // `for (const _ of iterable) n++` counts
      '@typescript-eslint/no-unused-vars': ['error', { args: 'none', caughtErrors: 'none', ignoreRestSiblings: true, vars: 'all', varsIgnorePattern: '^_' }]
    }
  },
  {
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: {
        projectService: true,
        tsconfigRootDir: import.meta.dirname
      }
    },
    rules: {
      // tap queues a subtest and reports its failures itself: `t.test(...)` is
      // not awaited, as in tap's own documentation
      '@typescript-eslint/no-floating-promises': ['error', {
        allowForKnownSafeCalls: [{ from: 'package', name: 'test', package: '@tapjs/test' }]
      }],
      '@typescript-eslint/no-misused-promises': 'error'
    }
  },
  {
    // the admin console's browser code (web/, bundled by esbuild): the browser globals it uses
    files: ['web/src/**/*.js'],
    languageOptions: {
      globals: Object.fromEntries(['addEventListener', 'removeEventListener', 'location', 'document', 'sessionStorage', 'fetch', 'URLSearchParams'].map((name) => [name, 'readonly']))
    }
  },
  ...boundaries
]
