#!/usr/bin/env node
// The installed `floodgate` command: runs the compiled CLI in dist/ (`npm run build`). It never compiles
// TypeScript on the fly, so the runtime needs no dev dependency; from a checkout, `npm run dev -- <command>`
// runs the sources through tsx instead, and `npm start` builds first when the sources changed.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const compiled = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
if (!existsSync(compiled)) {
  process.stderr.write(
    'floodgate: not built (dist/cli/main.js is missing). Run `npm run build` first, or `npm run dev -- <command>` to run the sources.\n',
  );
  process.exit(1);
}
await import(pathToFileURL(compiled).href);
