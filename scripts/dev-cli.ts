// Runs the CLI from source (no build): `npx tsx scripts/dev-cli.ts <command> …`.
import { main } from '../services/cli/main.js';
import { finish } from '../services/cli/finish.js';

main(process.argv.slice(2)).then(
  (code) => finish(code),
  (error: unknown) => {
    console.error(error);
    finish(1);
  },
);
