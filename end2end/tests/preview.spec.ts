import { expect, test } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { createPolicy, gotoHydrated, uniqueName } from './helpers';

/** Runs `apx-canary loadgen` (the real binary) with Zipf tenants (`tenant-1` the busiest) and
 *  returns how many responses it got back. */
function loadgen(baseURL: string, policy: string, tenants: number): number {
  const bin = process.env.APX_E2E_BIN ? path.resolve(process.env.APX_E2E_BIN) : path.resolve(__dirname, '../../target/release/apx-canary');
  const out = execFileSync(bin, ['loadgen', '--target', baseURL, '--policy', policy, '--seconds', '3',
    '--rps', '150', '--tenants', String(tenants), '--zipf', '1.1', '--concurrency', '4']).toString();
  let total = 0;
  for (const line of out.split('\n')) {
    const m = line.match(/^\s+(\S+)\s+(\S+)\s+(\d+) responses\s+(\d+) 5xx/);
    if (m && m[1] === policy) total += Number(m[3]);
  }
  expect(total, out).toBeGreaterThan(100);
  return total;
}

/** Tenants' buckets under `salt`, from the `splitter` CLI (independent of the page). */
function buckets(salt: string, tenants: string[]): Map<string, number> {
  const bin = path.resolve(__dirname, '../../target/debug/splitter');
  const out = execFileSync(bin, ['assign', '--policy', salt, '--salt', salt, '--percent', '0'], { input: tenants.join('\n') + '\n' }).toString();
  return new Map(out.trim().split('\n').slice(1).map((l) => l.split(',')).map(([t, b]) => [t, Number(b)]));
}

const pct = (text: string) => Number(text.match(/([0-9.]+)%/)![1]);

test('the simulator previews the requests a share sends to the canary and the busy tenants that move', async ({ page, request, baseURL }) => {
  // The preview reads complete minutes: the load's minute has to end first.
  test.setTimeout(150_000);
  const name = uniqueName('demo-preview');
  const config = await createPolicy(request, name, '0');
  const tenants = 200;
  // A share that moves the busiest tenant: 50 %, or just above its bucket.
  const bucket = buckets(config.salt, ['tenant-1']).get('tenant-1')!;
  const share = bucket < 5000 ? '50' : `${bucket + 1}bp`;
  const total = loadgen(baseURL!, name, tenants);

  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  const url = `/policies/${name}/simulate?share=${share}`;
  const summary = page.getByTestId('request-share');
  // Every request the load generator got back, once its minute is complete and flushed, but
  // its probe: that one names no tenant, and requests without a tenant are not in the preview.
  await expect(async () => {
    await page.goto(url);
    await expect(summary).toContainText(`with traffic, ${total - 1} requests.`, { timeout: 1_000 });
  }).toPass({ timeout: 100_000 });
  if (test.info().project.use.javaScriptEnabled) await gotoHydrated(page, url);
  const text = await summary.innerText();
  expect(text).toMatch(/^At [0-9.]+%, the canary would get about [0-9.]+% of requests \((range [0-9.]+%–[0-9.]+%|[0-9.]+% in every minute)\), ~[0-9.]+ requests\/min, based on the last \d+ minutes? \(of 60\) with traffic, \d+ requests\./);

  // The tenants listed are the load generator's, heaviest first, and the CLI agrees they move:
  // stable at 0 %, below the proposed share.
  const section = page.getByTestId('request-preview');
  await expect(section).toContainText('Tenants that move to canary include:');
  const movers = section.locator('[data-test="movers"] li');
  const listed = await movers.evaluateAll((lis) => lis.map((li) => [li.getAttribute('data-tenant')!, li.textContent!]));
  expect(listed.length).toBeGreaterThan(0);
  expect(listed[0][0]).toBe('tenant-1');
  const proposed = share.endsWith('bp') ? Number(share.slice(0, -2)) : Number(share) * 100;
  const assigned = buckets(config.salt, listed.map(([t]) => t));
  let movedShare = 0;
  let previous = Infinity;
  for (const [tenant, what] of listed) {
    expect(tenant).toMatch(/^tenant-\d+$/);
    expect(Number(tenant.slice('tenant-'.length))).toBeLessThanOrEqual(tenants);
    expect(assigned.get(tenant)!).toBeLessThan(proposed);
    const p = pct(what);
    expect(p).toBeLessThanOrEqual(previous);
    previous = p;
    movedShare += p;
  }
  // Plausible: the canary gets at least what the movers carry (it had nothing before).
  const canary = Number(text.match(/about ([0-9.]+)% of requests/)![1]);
  expect(canary).toBeGreaterThanOrEqual(movedShare - 0.5);
  expect(canary).toBeLessThanOrEqual(100);
  expect(text).toContain('Today, at 0%: about 0.0%.');

  if (test.info().project.use.javaScriptEnabled) {
    // Hydrated, the preview follows the share as it is typed.
    await page.getByLabel('Proposed share').fill('100');
    await expect(summary).toContainText('At 100%, the canary would get about 100.0% of requests (100.0% in every minute)');
  }
  expect(errors).toEqual([]);
});
