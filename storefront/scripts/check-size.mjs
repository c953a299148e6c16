#!/usr/bin/env node
// Fails when the production bundle (every file in dist/ the browser downloads for the first page)
// exceeds the budget gzipped. Run after `vite build`: `node scripts/check-size.mjs [limit KiB]`.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';

const dist = fileURLToPath(new URL('../dist', import.meta.url));
const limitKiB = Number(process.argv[2] ?? process.env.STOREFRONT_BUNDLE_LIMIT_KIB ?? 200);

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}

let files;
try {
  files = walk(dist).filter((f) => /\.(js|mjs|css|html|svg|json|woff2?)$/.test(f));
} catch {
  console.error(`bundle size: ${dist} is missing; run the build first (make storefront-build)`);
  process.exit(2);
}
if (!files.some((f) => f.endsWith('index.html'))) {
  console.error('bundle size: dist/index.html is missing; run the build first');
  process.exit(2);
}

let raw = 0;
let gz = 0;
for (const f of files.sort()) {
  const buf = readFileSync(f);
  const z = gzipSync(buf, { level: 9 }).length;
  raw += buf.length;
  gz += z;
  console.log(`  ${relative(dist, f).padEnd(36)} ${(buf.length / 1024).toFixed(1).padStart(8)} KiB  ${(z / 1024).toFixed(1).padStart(7)} KiB gzipped`);
}
const kib = gz / 1024;
const verdict = kib <= limitKiB ? 'ok' : 'OVER BUDGET';
console.log(`bundle size: ${kib.toFixed(1)} KiB gzipped (${(raw / 1024).toFixed(1)} KiB raw), limit ${limitKiB} KiB: ${verdict}`);
process.exit(kib <= limitKiB ? 0 : 1);
