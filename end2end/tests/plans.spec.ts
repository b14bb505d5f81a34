import { expect, test } from '@playwright/test';
import { execFile, execFileSync } from 'node:child_process';
import path from 'node:path';
import { createPolicy, getPolicy, gotoHydrated, sign, uniqueName } from './helpers';

/** Sends `apx-canary loadgen` traffic (the real binary) for `seconds`, from uniformly busy
 *  tenants (with Zipf tenants a unique policy's canary may draw far fewer requests than its
 *  share, and the plan would rightly wait instead of judging). */
function loadgen(baseURL: string, policy: string, seconds: number, canaryErrorRate: number) {
  const bin = process.env.APX_E2E_BIN ? path.resolve(process.env.APX_E2E_BIN) : path.resolve(__dirname, '../../target/release/apx-canary');
  execFileSync(bin, ['loadgen', '--target', baseURL, '--policy', policy, '--seconds', String(seconds),
    '--rps', '200', '--tenants', '2000', '--zipf', '0', '--canary-error-rate', String(canaryErrorRate), '--concurrency', '8']);
}

/** The same, without blocking the test: resolves when the load generator is done. */
function loadgenInBackground(baseURL: string, policy: string, seconds: number): Promise<void> {
  const bin = process.env.APX_E2E_BIN ? path.resolve(process.env.APX_E2E_BIN) : path.resolve(__dirname, '../../target/release/apx-canary');
  return new Promise((resolve, reject) => execFile(bin, ['loadgen', '--target', baseURL, '--policy', policy,
    '--seconds', String(seconds), '--rps', '200', '--tenants', '2000', '--zipf', '0', '--concurrency', '8'],
    (err) => (err ? reject(err) : resolve())));
}

/** Starts a plan from the policy page's form (works with and without JavaScript). */
async function startPlan(page: import('@playwright/test').Page, name: string, steps: string) {
  if (test.info().project.use.javaScriptEnabled) {
    await gotoHydrated(page, `/policies/${name}`);
  } else {
    await page.goto(`/policies/${name}`);
  }
  const form = await sign(page, `form[action="/policies/${name}/actions/plan"]`, 'e2e plan');
  await form.getByLabel(/^Steps/).fill(steps);
  await form.getByRole('button', { name: 'Start plan' }).click();
  await expect(page.locator('.flash.notice')).toContainText('Plan started at 5%');
  await expect(page.getByTestId('plan-step-1')).toHaveAttribute('aria-current', 'step');
}

test('a plan advances under healthy traffic and promotes by itself @store', async ({ page, request, baseURL }) => {
  test.setTimeout(180_000);
  const name = uniqueName('demo-plan-ok');
  await createPolicy(request, name, '0');
  await startPlan(page, name, '5% 30s\n50% 30s');
  // Healthy traffic for the two 30-s holds (and the controller's looks after each).
  const load = loadgenInBackground(baseURL!, name, 75);
  if (test.info().project.use.javaScriptEnabled) {
    // Hydrated, the verdict's numbers follow the traffic without a reload.
    const canaryRequests = page.getByTestId('verdict').locator('tbody tr').first().locator('td').first();
    await expect.poll(async () => Number(await canaryRequests.innerText()), { timeout: 30_000 }).toBeGreaterThan(0);
  }
  await load;
  await expect.poll(async () => (await getPolicy(request, name) as any).stable_version, { timeout: 60_000 }).toBe('v2');
  await page.reload();
  await expect(page.getByTestId('plan-ended')).toContainText('promoted');
  const history = page.locator('table.history tbody tr');
  await expect(history.first()).toContainText(`plan of ${name}`);
  await expect(history.nth(1)).toContainText('step passed');
});

test('a failing canary is rolled back by its plan with the numbers in the history @store', async ({ page, request, baseURL }) => {
  test.setTimeout(120_000);
  const name = uniqueName('demo-plan-bad');
  await createPolicy(request, name, '0');
  await startPlan(page, name, '5% 5m\n100% 5m');
  await page.goto(`/?q=${name}`);
  await expect(page.locator(`tr[data-policy="${name}"] [data-test="plan"]`)).toHaveText('step 1 of 2 (5%)');
  loadgen(baseURL!, name, 20, 0.2);
  await expect.poll(async () => (await getPolicy(request, name) as any).rolled_back, { timeout: 60_000 }).toBe(true);
  await page.goto(`/policies/${name}`);
  await expect(page.getByTestId('plan-ended')).toContainText('rolled back');
  await expect(page.getByTestId('share')).toContainText('0%');
  const last = page.locator('table.history tbody tr').first();
  await expect(last).toContainText(`plan of ${name}`);
  await expect(last).toContainText(/rolled back automatically: error rate: canary 5xx [0-9.]+% \(\d+ of \d+\)/);
});

test('the simulator says at which step of the plan each tenant moves', async ({ page, request }) => {
  const name = uniqueName('plan-sim');
  await createPolicy(request, name, '0');
  const tenants = Array.from({ length: 40 }, (_, i) => `tenant-${i}`);
  await page.goto(`/policies/${name}/simulate?tenants=${encodeURIComponent(tenants.join('\n'))}`);
  await expect(page.getByTestId('plan-caption')).toContainText('the original recipe, if started now (5% 15 min → 10% 30 min → 50% 60 min → 100% 120 min)');
  const rows = page.locator('table.simulation tbody tr');
  await expect(rows).toHaveCount(40);
  // The step follows from the bucket the page shows (checked against the CLI elsewhere).
  const steps: [number, string][] = [[500, 'step 1 (5%), at the start'], [1000, 'step 2 (10%), 15 min after'],
    [5000, 'step 3 (50%), 45 min after'], [10000, 'step 4 (100%), 105 min after']];
  for (let i = 0; i < 40; i++) {
    const row = rows.nth(i);
    const bucket = Number(await row.locator('td').nth(1).innerText());
    const expected = steps.find(([share]) => bucket < share)![1];
    await expect(row.getByTestId('joins')).toContainText(expected);
  }
});
