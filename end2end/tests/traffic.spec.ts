import { expect, test } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { auth, createPolicy, getPolicy, gotoHydrated, uniqueName } from './helpers';

/** Runs `apx-canary loadgen` (the real binary) and returns what it got back per version. */
function loadgen(baseURL: string, policy: string, seconds: number): Map<string, { responses: number; errors: number }> {
  const bin = process.env.APX_E2E_BIN ? path.resolve(process.env.APX_E2E_BIN) : path.resolve(__dirname, '../../target/release/apx-canary');
  const out = execFileSync(bin, ['loadgen', '--target', baseURL, '--policy', policy,
    '--seconds', String(seconds), '--rps', '150', '--tenants', '2000', '--canary-error-rate', '0.25',
    '--concurrency', '8']).toString();
  const rows = new Map<string, { responses: number; errors: number }>();
  for (const line of out.split('\n')) {
    const m = line.match(/^\s+(\S+)\s+(\S+)\s+(\d+) responses\s+(\d+) 5xx/);
    if (m && m[1] === policy) rows.set(m[2], { responses: Number(m[3]), errors: Number(m[4]) });
  }
  expect(rows.size, out).toBe(2);
  return rows;
}

test('load-generator traffic shows up per version in the numbers, the charts and /metrics @store', async ({ page, request, baseURL }) => {
  const name = uniqueName('demo-traffic');
  await createPolicy(request, name, '30');
  await page.goto(`/policies/${name}`);
  await expect(page.getByTestId('traffic-requests')).toHaveText('0');
  await expect(page.getByTestId('chart-rps')).toContainText('No requests recorded in the last 15 min');

  const got = loadgen(baseURL!, name, 3);
  const stable = got.get('stable')!;
  const canary = got.get('v2')!;
  const total = stable.responses + canary.responses;
  expect(stable.errors).toBe(0);
  expect(canary.errors).toBeGreaterThan(0);

  // The recorder flushes every second; the page reads the store.
  await expect(async () => {
    await page.reload();
    await expect(page.getByTestId('traffic-requests')).toHaveText(String(total), { timeout: 1_000 });
  }).toPass({ timeout: 30_000 });
  const row = (v: string) => page.locator(`tr[data-version="${v}"]`);
  await expect(row('v1').getByTestId('requests')).toHaveText(String(stable.responses));
  await expect(row('v1').getByTestId('errors')).toHaveText('0');
  await expect(row('v2').getByTestId('requests')).toHaveText(String(canary.responses));
  await expect(row('v2').getByTestId('errors')).toHaveText(String(canary.errors));
  const observed = ((canary.responses * 100) / total).toFixed(2) + '%';
  await expect(page.getByTestId('observed-share')).toHaveText(observed);
  await expect(page.getByTestId('configured-share')).toHaveText('30.00%');

  // Charts: drawn on the server, with title, legend and a text alternative.
  const rps = page.getByTestId('chart-rps');
  await expect(rps.locator('svg')).toContainText('v1 (stable)');
  await expect(rps.locator('svg')).toContainText('v2 (canary)');
  await expect(rps.locator('svg')).toContainText('Requests per second by version, last 15 min');
  await expect(rps.locator('[role="img"]')).toHaveAttribute('aria-label', new RegExp(`v2 \\(canary\\): ${canary.responses} requests`));
  await expect(page.getByTestId('chart-errors').locator('figcaption'))
    .toContainText(`v2 (canary): ${canary.errors} of ${canary.responses} requests failed with 5xx`);
  await expect(page.getByTestId('chart-latency').locator('svg')).toContainText('p95 latency (ms)');
  await expect(page.getByTestId('chart-latency').locator('figcaption')).toContainText(/v2 \(canary\): p50 [0-9.]+ ms, p95/);
  await expect(page.getByTestId('chart-share').locator('svg')).toContainText('configured');

  // /metrics agrees.
  const metrics = await (await request.get('/metrics')).text();
  expect(metrics).toContain(`apx_canary_requests_total{policy="${name}",version="v1"} ${stable.responses}`);
  expect(metrics).toContain(`apx_canary_errors_total{policy="${name}",version="v2"} ${canary.errors}`);
  expect(metrics).toContain(`apx_canary_configured_share_ratio{policy="${name}"} 0.3`);

  // The overview shows the observed share.
  await page.goto(`/?q=${name}`);
  await expect(page.locator(`tr[data-policy="${name}"] [data-test="observed"]`))
    .toContainText(`canary of ${total} requests`);

  // A share change is marked on the charts; the window selector works without JavaScript.
  const config = await getPolicy(request, name);
  const res = await request.put(`/api/v1/policies/${name}/share`, {
    data: { share: '50', reason: 'ramp' },
    headers: { ...auth(), 'if-match': `"${config.revision}"` },
  });
  expect(res.status()).toBe(200);
  await page.goto(`/policies/${name}`);
  await page.getByRole('link', { name: '1 hour' }).click();
  await expect(page).toHaveURL(/window=1h/);
  await expect(page.getByTestId('chart-share').locator('svg')).toContainText('share 50%');
  await expect(page.getByTestId('chart-share').locator('svg')).toContainText('last 1 hour');
  await expect(page.getByTestId('traffic-requests')).toHaveText(String(total));
  await page.screenshot({ path: test.info().outputPath('traffic.png'), fullPage: true });
});

test('the simulator charts the bucket distribution and redraws it as the share changes @hydration', async ({ page, request }) => {
  const name = uniqueName('buckets');
  await createPolicy(request, name, '10');
  const tenants = Array.from({ length: 400 }, (_, i) => `acct-${i}`);
  await gotoHydrated(page, `/policies/${name}/simulate`);
  await page.getByLabel(/^Tenant ids/).fill(tenants.join('\n'));
  const chart = page.getByTestId('chart-buckets');
  await expect(chart.locator('svg')).toContainText('Bucket distribution of 400 tenants');
  await expect(chart.locator('svg')).toContainText('proposed share: below 1000');
  await page.getByLabel('Proposed share').fill('42');
  await expect(chart.locator('svg')).toContainText('proposed share: below 4200');
  await expect(chart.locator('figcaption')).toContainText('Bars below bucket 4200 are canary');
});

test('an open policy page shows new traffic without a reload @hydration', async ({ page, request, baseURL }) => {
  const name = uniqueName('demo-live-traffic');
  await createPolicy(request, name, '20');
  await gotoHydrated(page, `/policies/${name}`);
  await expect(page.getByTestId('traffic-requests')).toHaveText('0');
  await page.evaluate(() => { (window as any).__stillHere = true; });
  const got = loadgen(baseURL!, name, 2);
  const total = [...got.values()].reduce((n, v) => n + v.responses, 0);
  // The section re-reads every 10 s; the recorder flushes every second.
  await expect(page.getByTestId('traffic-requests')).toHaveText(String(total), { timeout: 30_000 });
  await expect(page.locator('tr[data-version="v2"]').getByTestId('requests')).toHaveText(String(got.get('v2')!.responses));
  expect(await page.evaluate(() => (window as any).__stillHere === true)).toBe(true);
});
