#!/usr/bin/env node
// Browser UI check: the built storefront (dist/) in headless Chromium with the API answered by
// fixtures in the page's network layer (HTTP and the orders WebSocket). It checks what only a real
// browser shows: contrast and the other axe rules as rendered, layout shift while pages load,
// no sideways scrolling from 320 px to desktop, keyboard focus order, live status and the 429
// countdown. It is not the end-to-end test (browser/e2e.mjs runs the real stack); it runs
// anywhere Chromium is installed.
//   node browser/ui-check.mjs [--readme]   --readme also writes docs/img/storefront.png
import http from 'node:http';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { extname, join, normalize } from 'node:path';
import { REPO, STOREFRONT, artifactsDir, assert, axe, launch, layoutShift, overflowX, skip, steps, watchLayoutShift } from './chromium.mjs';

const DIST = join(STOREFRONT, 'dist');
if (!existsSync(join(DIST, 'index.html'))) skip('storefront/dist is missing: run `make storefront-build`');
const catalog = JSON.parse(readFileSync(join(STOREFRONT, 'src/test/catalog.json'), 'utf8'));
const out = artifactsDir('ui-check');
const README_SHOT = join(REPO, 'docs/img/storefront.png');

// dist/ served as the gateway serves it: immutable assets, index.html for every other path.
const TYPES = { '.js': 'text/javascript', '.css': 'text/css', '.html': 'text/html; charset=utf-8', '.svg': 'image/svg+xml', '.png': 'image/png' };
const server = http.createServer((req, res) => {
  const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname));
  const file = join(DIST, path);
  if (path !== '/' && file.startsWith(DIST) && existsSync(file) && statSync(file).isFile()) {
    res.writeHead(200, { 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream', 'Cache-Control': 'public, max-age=31536000, immutable' });
    return res.end(readFileSync(file));
  }
  res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-cache' });
  res.end(readFileSync(join(DIST, 'index.html')));
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const base = `http://127.0.0.1:${server.address().port}`;

// The fixture API. Answers are delayed a little so loading states are really rendered.
const DELAY_MS = 150;
const user = { id: 7, email: 'ana@example.com', firstName: 'Ana', lastName: 'García', role: 'customer' };
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
const token = `${b64({ alg: 'EdDSA' })}.${b64({ sub: '7', exp: Math.floor(Date.now() / 1000) + 3600 })}.sig`;
const state = { orders: [], throttle: 0, sockets: [] };
const now = () => new Date().toISOString();

async function api(route) {
  const req = route.request();
  const url = new URL(req.url());
  const path = url.pathname.replace(/^\/api/, '');
  const method = req.method();
  const reply = async (status, body, headers = {}) => {
    await new Promise((r) => setTimeout(r, DELAY_MS));
    await route.fulfill({ status, contentType: 'application/json', headers, body: JSON.stringify(body) });
  };
  if (state.throttle > 0) {
    state.throttle--;
    return reply(429, { error: 'rate limit exceeded', request_id: 'ui-429' }, { 'Retry-After': '2' });
  }
  if (method === 'GET' && path === '/products') {
    const q = url.searchParams;
    const cat = q.get('category')?.toLowerCase();
    const s = q.get('search')?.toLowerCase();
    const page = Number(q.get('page') ?? 1);
    const limit = Number(q.get('limit') ?? 20);
    const hits = catalog.filter((p) => (!cat || p.category.toLowerCase() === cat) && (!s || `${p.name} ${p.description}`.toLowerCase().includes(s)));
    return reply(200, hits.slice((page - 1) * limit, page * limit), { 'X-Total-Count': String(hits.length) });
  }
  const pm = path.match(/^\/products\/(\d+)$/);
  if (method === 'GET' && pm) {
    const p = catalog.find((x) => x.id === Number(pm[1]));
    return p ? reply(200, p) : reply(404, { error: 'product not found', request_id: 'ui' });
  }
  if (method === 'POST' && (path === '/auth/login' || path === '/auth/register')) return reply(path.endsWith('register') ? 201 : 200, { user, token });
  if (method === 'GET' && path === '/orders') return reply(200, [...state.orders].reverse());
  if (method === 'POST' && path === '/orders') {
    const body = req.postDataJSON();
    const items = body.items.map((i) => ({ ...i, price: catalog.find((p) => p.id === i.product_id).price }));
    const total = items.reduce((n, i) => n + Math.round(i.price * 100) * i.quantity, 0) / 100;
    const o = { id: 1000 + state.orders.length + 1, user_id: 7, items, total, status: 'pending', shipping_address: body.shipping_address, created_at: now(), updated_at: now() };
    state.orders.push(o);
    return reply(201, o);
  }
  const om = path.match(/^\/orders\/(\d+)(\/pay)?$/);
  if (om) {
    const o = state.orders.find((x) => x.id === Number(om[1]));
    if (!o) return reply(404, { error: 'order not found', request_id: 'ui' });
    if (!om[2]) return reply(200, o);
    const number = req.postDataJSON().card.number;
    if (number !== '4242424242424242') return reply(402, { error: 'card declined: generic_decline', request_id: 'ui-402' });
    o.status = 'paid';
    return reply(200, o);
  }
  return reply(404, { error: 'not found', request_id: 'ui' });
}

const t = steps();
let browser;
let ok = false;
try {
  browser = await launch();
  const { context } = browser;
  await context.route(`${base}/api/**`, api);
  await context.routeWebSocket(/\/api\/ws\/orders/, (ws) => {
    state.sockets.push(ws);
  });
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await watchLayoutShift(page);

  for (const width of [320, 375, 768, 1280]) {
    await t.step(`catalog at ${width} px: no layout shift, no sideways scroll, no axe violations`, async () => {
      await page.setViewportSize({ width, height: width < 700 ? 800 : 900 });
      await page.goto(`${base}/`);
      await page.getByRole('list', { name: 'Products' }).waitFor();
      await page.waitForTimeout(DELAY_MS * 2); // categories arrive after the products
      const cls = await layoutShift(page);
      assert(cls < 0.1, `cumulative layout shift ${cls.toFixed(3)} (want < 0.1)`);
      console.log(`        layout shift ${cls.toFixed(4)}`);
      assert((await overflowX(page)) <= 0, `scrolls sideways by ${await overflowX(page)} px`);
      const v = await axe(page);
      assert(v.length === 0, `axe: ${JSON.stringify(v)}`);
      await page.screenshot({ path: join(out, `catalog-${width}.png`), fullPage: width >= 768 });
      if (width === 1280 && process.argv.includes('--readme')) {
        await page.mouse.move(0, 0);
        await page.screenshot({ path: README_SHOT });
        console.log(`        wrote ${README_SHOT}`);
      }
    });
  }

  await t.step('keyboard: skip link first; navigating moves focus to the new page heading', async () => {
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.goto(`${base}/`);
    await page.getByRole('list', { name: 'Products' }).waitFor();
    await page.keyboard.press('Tab');
    assert((await page.evaluate(() => document.activeElement?.textContent)) === 'Skip to content', 'the first Tab stop is not the skip link');
    const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    assert(outline === 'solid', `keyboard focus has no visible outline (${outline})`);
    await page.keyboard.press('Enter');
    assert(await page.evaluate(() => document.activeElement?.id === 'main'), 'the skip link does not move focus to main');
    await page.getByRole('link', { name: 'Silla Gaming' }).focus();
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { level: 1, name: 'Silla Gaming' }).waitFor();
    assert(await page.evaluate(() => document.activeElement?.tagName === 'H1'), 'focus did not move to the h1 after navigation');
    await page.keyboard.press('Tab'); // to the quantity input, then the button
    await page.keyboard.press('Tab');
    await page.keyboard.press('Enter');
    await page.getByText('Added 1 × Silla Gaming to your cart.').waitFor();
  });

  await t.step('checkout: focus order follows the form, and the test cards are shown', async () => {
    await page.evaluate((s) => localStorage.setItem('archway.auth', s), JSON.stringify({ token, user }));
    await page.goto(`${base}/checkout`);
    await page.getByRole('heading', { level: 1, name: 'Checkout' }).waitFor();
    await page.getByLabel('Full name').focus();
    const order = [];
    for (let i = 0; i < 11; i++) {
      order.push(await page.evaluate(() => {
        const el = document.activeElement;
        return el?.labels?.[0]?.textContent?.replace(/\s*\*$/, '') || el?.getAttribute('aria-label') || el?.textContent;
      }));
      await page.keyboard.press('Tab');
    }
    const want = ['Full name', 'Street and number', 'Postal code', 'City', 'Country',
      'Use test card 4242 4242 4242 4242 (Approved)', 'Use test card 4000 0000 0000 0002 (Declined)',
      'Use test card 4000 0000 0000 9995 (Declined: insufficient funds)', 'Card number', 'Expiry date', 'Security code (CVC)'];
    assert(JSON.stringify(order) === JSON.stringify(want), `focus order ${JSON.stringify(order)}`);
    const v = await axe(page);
    assert(v.length === 0, `axe: ${JSON.stringify(v)}`);
  });

  await t.step('checkout by keyboard: a declined card, then an approved one', async () => {
    for (const [label, value] of [['Street and number', 'Calle Mayor 1'], ['Postal code', '28013'], ['City', 'Madrid'], ['Country', 'Spain']]) {
      await page.getByLabel(label).fill(value);
    }
    await page.getByRole('button', { name: /Use test card 4000 0000 0000 0002/ }).focus();
    await page.keyboard.press('Enter');
    await page.getByRole('button', { name: /Place order and pay/ }).focus();
    await page.keyboard.press('Enter');
    await page.getByRole('alert').getByText('Payment declined: the card was declined.', { exact: false }).waitFor();
    const v = await axe(page);
    assert(v.length === 0, `axe with the decline shown: ${JSON.stringify(v)}`);
    await page.screenshot({ path: join(out, 'checkout-declined.png'), fullPage: true });
    await page.getByRole('button', { name: /Use test card 4242/ }).click();
    await page.getByRole('button', { name: /^Pay \$/ }).click();
    await page.getByRole('heading', { level: 1, name: /Order #\d+/ }).waitFor();
    await page.locator('[data-status="paid"]').waitFor();
  });

  await t.step('my orders: a status pushed over the WebSocket shows without a reload, and is announced', async () => {
    const pending = { id: 2001, user_id: 7, items: [{ product_id: 3, quantity: 1, price: 199.99 }], total: 199.99, status: 'pending', shipping_address: 'Ana García, Calle Mayor 1, 28013 Madrid, Spain', created_at: now(), updated_at: now() };
    state.orders.push(pending);
    state.sockets.length = 0;
    await page.goto(`${base}/orders`);
    await page.locator('tr[data-order-id="2001"] [data-status="pending"]').waitFor();
    await page.locator('[data-live="open"]').waitFor();
    await page.evaluate(() => (window.__noReload = true));
    const ws = state.sockets.at(-1);
    assert(ws && !new URL(ws.url()).searchParams.has('token'), `the token is in the socket URL: ${ws?.url()}`);
    pending.status = 'paid';
    ws.send(JSON.stringify({ type: 'order_status', order_id: 2001, status: 'paid', updated_at: now() }));
    await page.locator('tr[data-order-id="2001"] [data-status="paid"]').waitFor();
    await page.getByText('Order #2001 is now paid.').waitFor({ state: 'attached' });
    assert(await page.evaluate(() => window.__noReload === true), 'the page reloaded');
    const v = await axe(page);
    assert(v.length === 0, `axe: ${JSON.stringify(v)}`);
    await page.screenshot({ path: join(out, 'orders-live.png'), fullPage: true });
    ws.close({ code: 1012 });
    await page.locator('[data-live="reconnecting"]').waitFor();
    await page.locator('[data-live="open"]').waitFor();
  });

  await t.step('every page at 320 px: no sideways scroll, no axe violations', async () => {
    await page.setViewportSize({ width: 320, height: 700 });
    await page.evaluate(() =>
      localStorage.setItem('archway.cart', JSON.stringify([{ productId: 3, name: 'Auriculares Bluetooth', price: 199.99, inventory: 200, quantity: 2 }])),
    );
    for (const [path, ready] of [
      ['/products/3', 'Auriculares Bluetooth'],
      ['/cart', 'Your cart'],
      ['/checkout', 'Checkout'],
      ['/orders', 'My orders'],
      ['/orders/2001', 'Order #2001'],
    ]) {
      await page.goto(`${base}${path}`);
      await page.getByRole('heading', { level: 1, name: ready }).waitFor();
      await page.waitForLoadState('networkidle');
      const over = await overflowX(page);
      assert(over <= 0, `${path} scrolls sideways by ${over} px at 320 px`);
      const v = await axe(page);
      assert(v.length === 0, `axe on ${path}: ${JSON.stringify(v)}`);
      await page.screenshot({ path: join(out, `phone${path.replaceAll('/', '-')}.png`), fullPage: true });
    }
    await page.evaluate(() => localStorage.removeItem('archway.cart'));
    await page.goto(`${base}/register`);
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.getByText('Enter your first name.').waitFor();
    assert((await overflowX(page)) <= 0, '/register scrolls sideways at 320 px');
    const v = await axe(page);
    assert(v.length === 0, `axe on /register with errors: ${JSON.stringify(v)}`);
    await page.screenshot({ path: join(out, 'phone-register-errors.png'), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  await t.step('429: "too many requests, try again in N s" counts down from Retry-After, then Try again works', async () => {
    state.throttle = 2; // the products page and the categories
    await page.goto(`${base}/`);
    const alert = page.getByRole('alert').first();
    await alert.getByText('Too many requests, try again in 2 s.').first().waitFor();
    await page.screenshot({ path: join(out, 'too-many-requests.png') });
    await alert.getByText('You can try again now.').waitFor({ timeout: 5000 });
    await alert.getByRole('button', { name: 'Try again' }).click();
    await page.getByRole('list', { name: 'Products' }).waitFor();
    await page.getByLabel('Category').locator('option', { hasText: 'Furniture' }).waitFor({ state: 'attached' });
    assert(errors.length === 0, `page errors: ${errors.join('; ')}`);
  });
  ok = true;
} catch (err) {
  console.error(`ui-check: ${String(err?.message ?? err)}`);
} finally {
  await browser?.close();
  server.close();
  const passed = t.summary();
  console.log(`screenshots: ${out}`);
  process.exit(ok && passed ? 0 : 1);
}
