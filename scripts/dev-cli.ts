// Runs the CLI from source (no build): `npx tsx scripts/dev-cli.ts <command> …`.
import { main } from '../services/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  },
);
