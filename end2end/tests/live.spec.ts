import { expect, test } from '@playwright/test';
import { auth, cliAssignments, createPolicy, getPolicy, gotoHydrated, liveRefreshes, sign, uniqueName } from './helpers';

test('an open page follows a change made elsewhere without a reload @hydration', async ({ page, request }) => {
  const name = uniqueName('live');
  const config = await createPolicy(request, name, '5');
  await gotoHydrated(page, `/policies/${name}`);
  await page.evaluate(() => { (window as any).__stillHere = true; });
  const res = await request.put(`/api/v1/policies/${name}/share`, {
    data: { share: '33.3', reason: 'from the API' },
    headers: { ...auth(), 'if-match': `"${config.revision}"` },
  });
  expect(res.status()).toBe(200);
  await expect(page.locator('dd[data-test="share"]')).toContainText('33.3%', { timeout: 10_000 });
  await expect(page.locator('table.history')).toContainText('from the API');
  expect(await page.evaluate(() => (window as any).__stillHere === true)).toBe(true);
});

test('the simulator updates instantly as the share changes @hydration', async ({ page, request }) => {
  const name = uniqueName('instant');
  const config = await createPolicy(request, name, '10');
  const tenants = Array.from({ length: 200 }, (_, i) => `acct-${i}`);
  await gotoHydrated(page, `/policies/${name}/simulate`);
  await page.getByLabel(/^Tenant ids/).fill(tenants.join('\n'));
  for (const share of ['20', '62.5', '0.5']) {
    await page.getByLabel('Proposed share').fill(share);
    const expected = cliAssignments(name, config.salt, share, tenants);
    const onCanary = [...expected.values()].filter((a) => a === 'canary').length;
    await expect(page.locator('[data-test="canary-proposed"]')).toHaveText(String(onCanary));
    // Read the rows as one snapshot, retried until the table has settled.
    await expect(async () => {
      const shown = await page.locator('table.simulation tbody tr').evaluateAll((rows) =>
        rows.map((r) => [r.getAttribute('data-tenant'), r.getAttribute('data-proposed')]));
      expect(shown.length).toBe(200);
      for (const [t, a] of shown) expect(a, t ?? '').toBe(expected.get(t ?? ''));
    }).toPass({ timeout: 10_000 });
  }
  // Nothing was submitted: the URL did not change.
  expect(page.url()).not.toContain('share=');
  await page.getByLabel('Proposed share').fill('150');
  await expect(page.locator('.flash.error')).toContainText('more than 100%');
});

test('a file of tenant ids can be uploaded to the simulator', async ({ page, request }, info) => {
  const name = uniqueName('upload');
  const config = await createPolicy(request, name, '10');
  const tenants = Array.from({ length: Number(process.env.UPLOAD_N ?? 100_000) }, (_, i) => `t-${i}`);
  if (info.project.name === 'js-off') await page.goto(`/policies/${name}/simulate?share=25`);
  else await gotoHydrated(page, `/policies/${name}/simulate?share=25`);
  await page.getByLabel(/upload a CSV/).setInputFiles({
    name: 'tenants.csv', mimeType: 'text/csv', buffer: Buffer.from('tenant,plan\n' + tenants.map((t) => `${t},gold`).join('\n')),
  });
  // Without JavaScript the file goes to the server; hydrated, the browser reads it at once.
  if (info.project.name === 'js-off') await page.getByRole('button', { name: 'Upload and simulate' }).click();
  await expect(page.locator('[data-test="tenants"]')).toHaveText(String(tenants.length), { timeout: 45_000 });
  const expected = cliAssignments(name, config.salt, '25', tenants);
  const onCanary = [...expected.values()].filter((a) => a === 'canary').length;
  await expect(page.locator('[data-test="canary-proposed"]')).toHaveText(String(onCanary));
  await expect(page.locator('[data-test="observed"]')).toContainText('vs 25% target');
});

test('tenants can be pinned and unpinned @store', async ({ page, request }) => {
  const name = uniqueName('pins');
  await createPolicy(request, name, '0');
  await page.goto(`/policies/${name}`);
  const form = await sign(page, 'form[action$="/actions/pin"]', 'vip');
  await form.getByLabel('Tenant id').fill('über gmbh, inc.');
  await form.getByLabel('Pin to').selectOption('canary');
  await form.getByRole('button', { name: 'Pin' }).click();
  await expect(page.locator('.flash.notice')).toContainText('Pinned über gmbh, inc. to canary');
  expect((await getPolicy(request, name) as any).overrides).toEqual({ 'über gmbh, inc.': 'canary' });
  const unpin = await sign(page, 'table.pins form', 'done');
  await unpin.getByRole('button', { name: 'Unpin' }).click();
  await expect(page.locator('.flash.notice')).toContainText('Unpinned über gmbh, inc.');
  expect((await getPolicy(request, name) as any).overrides).toEqual({});
});

test('a change to another policy does not disturb a half-filled form @hydration', async ({ page, request }) => {
  const mine = uniqueName('mine');
  await createPolicy(request, mine, '5');
  const other = await createPolicy(request, uniqueName('other'), '5');
  await gotoHydrated(page, `/policies/${mine}`);
  const form = page.locator('form[action$="/actions/share"]');
  await form.getByLabel(/^New share/).fill('7.5');
  const before = await liveRefreshes(page);
  const res = await request.put(`/api/v1/policies/${other.policy_name}/share`, {
    data: { share: '9' }, headers: { ...auth(), 'if-match': `"${other.revision}"` },
  });
  expect(res.status()).toBe(200);
  // The change reached this page (its live refresh ran and found this policy unchanged): if
  // live updates were broken, this wait would fail instead of passing vacuously.
  await expect.poll(() => liveRefreshes(page)).toBeGreaterThan(before);
  await expect(form.getByLabel(/^New share/)).toHaveValue('7.5');
  await expect(page.locator('dd[data-test="revision"]')).toHaveText('1');
});

test('an open simulator keeps working while the store changes underneath it @hydration', async ({ page, request }) => {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  const name = uniqueName('churn-sim');
  const config = await createPolicy(request, name, '10');
  const other = await createPolicy(request, uniqueName('churn'), '10');
  await gotoHydrated(page, `/policies/${name}/simulate`);
  const tenants = Array.from({ length: 50 }, (_, i) => `acct-${i}`);
  const storeVersion = async () => Number(await page.locator('html').getAttribute('data-store-version') ?? 0);
  // Six changes elsewhere, each re-rendering the simulator while a tenant list is being applied.
  for (let i = 0; i < 6; i++) {
    const before = await storeVersion();
    await page.getByLabel(/^Tenant ids/).fill(tenants.slice(0, 10 + i).join('\n'));
    const res = await request.put(`/api/v1/policies/${other.policy_name}/share`, {
      data: { share: String(11 + i) }, headers: { ...auth(), 'if-match': `"${other.revision + i}"` },
    });
    expect(res.status()).toBe(200);
    await expect.poll(storeVersion).toBeGreaterThan(before);
  }
  await page.getByLabel(/^Tenant ids/).fill(tenants.join('\n'));
  const expected = cliAssignments(name, config.salt, '10', tenants);
  const onCanary = [...expected.values()].filter((a) => a === 'canary').length;
  await expect(page.locator('[data-test="canary-now"]')).toHaveText(String(onCanary));
  expect(errors).toEqual([]);
});
