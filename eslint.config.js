// Lint as an architecture test: the core and the stages import no adapter; no floating promises.
// Import cycles are checked by scripts/check-import-cycles.ts (part of `npm run lint`).
import tseslint from 'typescript-eslint';

const adapterImports = {
  patterns: [
    {
      group: ['**/adapters/**', '**/runtime/**', '**/cli/**', '**/api/**', '**/app/**'],
      message: 'The core and the stages talk to ports only: import no adapter, runtime or front end.',
    },
    {
      group: [
        'better-sqlite3',
        'sqlite-vec',
        'kafkajs',
        '@elastic/*',
        '@temporalio/*',
        'onnxruntime-node',
        'prom-client',
        '@modelcontextprotocol/*',
        'node:http',
      ],
      message: 'Infrastructure libraries belong in adapters.',
    },
  ],
};

/** Temporal workflow code (and what it imports): the adapter rules, but `@temporalio/workflow` is allowed. */
const workflowAdapterImports = {
  patterns: adapterImports.patterns.map((pattern) =>
    pattern.group.includes('@temporalio/*')
      ? { ...pattern, group: [...pattern.group, '!@temporalio/workflow'] }
      : pattern,
  ),
};

const escapeRegExp = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const nodeBuiltins = [
  ...['assert', 'buffer', 'child_process', 'crypto', 'events', 'fs', 'http', 'https', 'net', 'os'],
  ...['path', 'process', 'stream', 'timers', 'url', 'util', 'worker_threads'],
];
/** `node:*` and the bare names of Node's modules. */
const nodeModule = `^(node:|(${nodeBuiltins.join('|')})(/|$))`;
/** Anything of services/. */
const servicesModule = '(^|/)services/';

/**
 * Workflow code runs in Temporal's deterministic sandbox: it imports `@temporalio/workflow` and types only
 * (a `.workflow.ts` file also the orchestration); never a Node module or anything of services/, not even
 * its types.
 */
const sandboxImports = (allowed) => ({
  patterns: [
    { regex: nodeModule, message: 'Workflow code runs in Temporal’s sandbox: no Node modules.' },
    {
      regex: servicesModule,
      message: 'Workflow code reaches the ports only through activities: import nothing of services/.',
    },
    {
      // Everything else but the allowed modules, as types only.
      regex: `^(?!(${allowed.map(escapeRegExp).join('|')})$)(?!${nodeModule.slice(1)})(?!.*${servicesModule})`,
      allowTypeImports: true,
      message: `Workflow code imports only ${allowed.join(', ')} and types (import type).`,
    },
  ],
});

export default tseslint.config(
  {
    ignores: [
      'dist/**',
      'node_modules/**',
      'scratch/**',
      '.lightmem/**',
      '.cache/**',
      'services/core/model/generated.ts',
    ],
  },
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        projectService: { allowDefaultProject: ['eslint.config.js', 'bin/*.js'] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/restrict-template-expressions': [
        'error',
        { allowNumber: true, allowBoolean: true },
      ],
      '@typescript-eslint/no-unnecessary-condition': 'off',
      '@typescript-eslint/no-confusing-void-expression': 'off',
      'no-console': 'off',
      // Adapters over synchronous SQLite implement async ports without awaiting.
      '@typescript-eslint/require-await': 'off',
    },
  },
  {
    files: ['services/core/**/*.ts', 'services/stages/**/*.ts', 'workflows/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', adapterImports] },
  },
  {
    files: ['workflows/consolidation/orchestration.ts', 'workflows/consolidation/activity-types.ts'],
    rules: {
      'no-restricted-imports': ['error', workflowAdapterImports],
      '@typescript-eslint/no-restricted-imports': ['error', sandboxImports(['@temporalio/workflow'])],
    },
  },
  {
    files: ['workflows/**/*.workflow.ts'],
    rules: {
      'no-restricted-imports': ['error', workflowAdapterImports],
      '@typescript-eslint/no-restricted-imports': [
        'error',
        sandboxImports(['@temporalio/workflow', './orchestration.js']),
      ],
    },
  },
  {
    files: ['services/**/*.ts', 'workflows/**/*.ts'],
    ignores: ['services/cli/**'],
    rules: {
      // Only entry points read the environment; everything else gets a parsed config.
      'no-restricted-properties': [
        'error',
        {
          object: 'process',
          property: 'env',
          message: 'Read configuration in the CLI entry point and pass it down.',
        },
      ],
    },
  },
  {
    files: ['test/**/*.ts', 'scripts/**/*.ts', 'infra/**/*.ts'],
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [
            { from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite'] },
          ],
        },
      ],
    },
  },
  { files: ['**/*.js'], ...tseslint.configs.disableTypeChecked },
);
