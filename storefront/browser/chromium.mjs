// Shared by the browser tests: Debian's Chromium driven by playwright-core (never a downloaded
// browser), a fresh profile per run, artifacts under storefront/test-results/.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

export const STOREFRONT = fileURLToPath(new URL('..', import.meta.url));
export const REPO = join(STOREFRONT, '..');
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const CI = process.env.CI === 'true';

/** Ends the run as skipped (exit 0), or as failed under CI=true, as the project's tests do. */
export function skip(why) {
  if (CI) {
    console.error(`FAIL (skip is a failure under CI=true): ${why}`);
    process.exit(1);
  }
  console.log(`SKIP: ${why}`);
  process.exit(0);
}

export function artifactsDir(name) {
  const dir = join(STOREFRONT, 'test-results', name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** A persistent context (so two tabs share localStorage, as a shopper's tabs do). */
export async function launch({ viewport = { width: 1280, height: 800 } } = {}) {
  if (!existsSync(CHROMIUM)) skip(`${CHROMIUM} not found: run \`make deps\` (installs Debian's chromium)`);
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch {
    skip('playwright-core is not installed: run `make deps` (npm ci in storefront/)');
  }
  const profile = mkdtempSync(join(tmpdir(), 'storefront-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const close = async () => {
    await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, close };
}

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

/**
 * Runs every axe-core rule (contrast included) on the page as rendered; returns the violations.
 * axe is injected through page.evaluate (the DevTools protocol), which the page's
 * Content-Security-Policy does not govern: the gateway serves the storefront with
 * `default-src 'self'`, which rightly refuses inline scripts, and the test keeps that policy on
 * so a violation by the app itself would still show.
 */
export async function axe(page, { exclude = [] } = {}) {
  if (!(await page.evaluate(() => 'axe' in window))) await page.evaluate(AXE_SOURCE);
  const result = await page.evaluate(async (exclude) => {
    const r = await window.axe.run(exclude.length ? { exclude } : document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, targets: v.nodes.map((n) => n.target.join(' ')) }));
  }, exclude);
  return result;
}

/** Starts summing layout shifts (CLS) from now; read it with layoutShift(page). */
export async function watchLayoutShift(page) {
  await page.addInitScript(() => {
    window.__cls = 0;
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) if (!e.hadRecentInput) window.__cls += e.value;
    }).observe({ type: 'layout-shift', buffered: true });
  });
}

export function layoutShift(page) {
  return page.evaluate(() => window.__cls ?? 0);
}

/** Horizontal overflow (a phone user would have to scroll sideways). */
export function overflowX(page) {
  return page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
}

/** A tiny test runner: named steps, timings, and a closing "N passed, N failed" line. */
export function steps() {
  const results = [];
  return {
    async step(name, fn) {
      const t0 = Date.now();
      try {
        await fn();
        results.push({ name, ok: true });
        console.log(`  ok    ${name} (${Date.now() - t0} ms)`);
      } catch (err) {
        results.push({ name, ok: false });
        console.log(`  FAIL  ${name} (${Date.now() - t0} ms)\n        ${String(err?.stack ?? err).split('\n').slice(0, 6).join('\n        ')}`);
        throw err;
      }
    },
    summary() {
      const passed = results.filter((r) => r.ok).length;
      const failed = results.length - passed;
      console.log(`${passed} passed, ${failed} failed`);
      return failed === 0;
    },
  };
}

export function assert(cond, message) {
  if (!cond) throw new Error(message);
}
