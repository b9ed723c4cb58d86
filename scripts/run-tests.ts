// Runs every test/**/*.test.ts file with node's test runner (Node 20 does not
// expand globs itself). Extra arguments narrow the set to paths containing them.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

function collect(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return collect(path);
    return entry.name.endsWith('.test.ts') ? [path] : [];
  });
}

const filters = process.argv.slice(2);
// Leftover checks (test/host/leftovers.test.ts) look for what every other file may
// have left, so they run after the rest, in a second run (node orders the files of one run itself).
const isLeftoverCheck = (file: string) => file.endsWith('/leftovers.test.ts');
const files = collect('test')
  .filter((file) => filters.length === 0 || filters.some((f) => file.includes(f)))
  .sort();
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
let failed = false;
for (const batch of [files.filter((f) => !isLeftoverCheck(f)), files.filter(isLeftoverCheck)]) {
  if (batch.length === 0) continue;
  const result = spawnSync(
    process.execPath,
    ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-reporter=spec', ...batch],
    { stdio: 'inherit', env: { SANDBOXD_LOG_LEVEL: 'silent', ...process.env } },
  );
  if (result.status !== 0) failed = true;
}
process.exit(failed ? 1 : 0);
