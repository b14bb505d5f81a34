import { expect, test } from '@playwright/test';
import { auth, createPolicy, getPolicy, gotoHydrated, sign, uniqueName } from './helpers';

// Runs in the hydrated project only (see playwright.config.ts).
test('a late live refresh of one policy never replaces the page of another @hydration', async ({ page, request }) => {
  const a = await createPolicy(request, uniqueName('race-a'), '5');
  const b = await createPolicy(request, uniqueName('race-b'), '20');
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await gotoHydrated(page, `/policies/${a.policy_name}`);

  // Hold the page's live re-read of policy a (its server function call) until the test lets it
  // go; every other call passes at once.
  let release!: () => void;
  const released = new Promise<void>((r) => { release = r; });
  let sawHeld!: () => void;
  const held = new Promise<void>((r) => { sawHeld = r; });
  const asksForA = new RegExp(`(^|&)name=${a.policy_name}(&|$)`);
  await page.route('**/api/get_policy*', async (route) => {
    if (asksForA.test(route.request().postData() ?? '')) {
      sawHeld();
      await released;
    }
    await route.continue();
  });

  // A change to a: the page asks for a again, and that answer is held.
  const changed = await request.put(`/api/v1/policies/${a.policy_name}/share`, {
    data: { share: '6', reason: 'race' }, headers: { ...auth(), 'if-match': `"${a.revision}"` },
  });
  expect(changed.status()).toBe(200);
  await held;

  // The operator follows a link to b (client-side navigation on the same route) …
  await page.evaluate((href) => {
    const link = document.createElement('a');
    link.href = href;
    link.id = 'to-b';
    link.textContent = 'policy b';
    document.body.append(link);
  }, `/policies/${b.policy_name}`);
  await page.locator('#to-b').click();
  await expect(page).toHaveURL(new RegExp(`/policies/${b.policy_name}$`));
  await expect(page.locator('h1')).toContainText(b.policy_name);

  // … and only then does a's answer arrive. Wait until the page has handled it (as stale).
  release();
  await expect.poll(async () => Number(await page.locator('.policy-page').getAttribute('data-live-stale'))).toBeGreaterThan(0);

  // Still b's page, with b's numbers and only b's forms.
  await expect(page.locator('h1')).toContainText(b.policy_name);
  await expect(page.locator('dd[data-test="share"]')).toContainText('20%');
  await expect(page.locator(`form[action^="/policies/${a.policy_name}/"]`)).toHaveCount(0);
  await expect(page.locator(`form[action="/policies/${b.policy_name}/actions/pin"]`)).toHaveCount(1);

  // A form post from this page lands on b, not on a.
  const form = await sign(page, 'form[action$="/actions/pin"]', 'race check');
  await form.getByLabel('Tenant id').fill('tenant-race');
  await form.getByRole('button', { name: 'Pin' }).click();
  await expect(page.locator('.flash.notice')).toContainText('Pinned tenant-race to canary');
  expect((await getPolicy(request, b.policy_name) as any).overrides).toEqual({ 'tenant-race': 'canary' });
  const storedA = await getPolicy(request, a.policy_name) as any;
  expect([storedA.overrides, storedA.revision]).toEqual([{}, 2]);
  expect(errors).toEqual([]);
});
