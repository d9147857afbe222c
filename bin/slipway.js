#!/usr/bin/env -S node --initial-old-space-size=128
// The `slipway` command: runs the compiled CLI (build with `npm run build`).
// The flag: V8 otherwise sizes the old generation so small after start-up that streaming a
// large blob (~1 GiB of short-lived Buffers) triggers dozens of full GCs; measured in bench/.
import('../dist/src/cli/main.js').then((cli) => cli.main(process.argv)).catch((error) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
