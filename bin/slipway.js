#!/usr/bin/env node
// The `slipway` command: runs the compiled CLI (build with `npm run build`).
import('../dist/src/cli/main.js').then((cli) => cli.main(process.argv)).catch((error) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
