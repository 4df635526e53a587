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
        'node:http',
      ],
      message: 'Infrastructure libraries belong in adapters.',
    },
  ],
};

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
