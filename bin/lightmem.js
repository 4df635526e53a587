#!/usr/bin/env node
// Thin launcher: the CLI is compiled to dist/ by `npm install` (prepare) or `npm run build`.
import { main } from '../dist/services/cli/main.js';
import { finish } from '../dist/services/cli/finish.js';

main(process.argv.slice(2)).then(
  (code) => finish(code),
  (error) => {
    console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
    finish(1);
  },
);
