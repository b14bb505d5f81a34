import { expect, test } from '@playwright/test';
import { auth, contextAs, createPolicy, getPolicy, sign, uniqueName } from './helpers';

// Who may move traffic, in a real browser with JavaScript off and on (embedded and Firestore).

test('a viewer sees no write controls, and a forged post with its cookie is refused @store', async ({ browser, request }) => {
  const name = uniqueName('viewed');
  await createPolicy(request, name, '10');
  const context = await contextAs(browser, 'e2e-viewer');
  const page = await context.newPage();
  await page.goto(`/policies/${name}`);
  await expect(page.locator('[data-test="who"]')).toContainText('e2e-viewer · viewer');
  await expect(page.locator('[data-test="read-only"]').first()).toHaveText('read-only: viewer');
  await expect(page.locator('form[action*="/actions/"]')).toHaveCount(0);
  // The same post a form would send, with the viewer's cookie and even its own CSRF token.
  const session = await (await page.request.get('/api/v1/session')).json();
  const forged = await page.request.post(`/policies/${name}/actions/share`, {
    form: { revision: '1', reason: 'forged', confirm: 'yes', share: '100', csrf: session.csrf },
    headers: { origin: new URL(page.url()).origin },
    maxRedirects: 0,
  });
  expect(forged.status()).toBe(403);
  expect((await getPolicy(request, name)).canary_basis_points).toBe(1000);
  await context.close();
});

test('an operator limited to payments-* can promote payments-… and not search-… @store', async ({ browser, request }) => {
  const payments = await createPolicy(request, uniqueName('payments-api'), '100');
  const search = await createPolicy(request, uniqueName('search-api'), '100');
  const context = await contextAs(browser, 'e2e-ops');
  const page = await context.newPage();
  await page.goto(`/policies/${search.policy_name}`);
  await expect(page.locator('[data-test="read-only"]').first()).toContainText('covers payments-* only');
  await expect(page.locator('form[action$="/actions/promote"]')).toHaveCount(0);
  await page.goto(`/policies/${payments.policy_name}`);
  const form = await sign(page, 'form[action$="/actions/promote"]', 'ship it');
  await form.getByRole('button', { name: 'Promote canary' }).click();
  await expect(page.locator('.flash.notice')).toContainText('Promoted: v2 is now stable');
  await expect(page.locator('table.history')).toContainText('e2e-ops (password)');
  // Deleting is an admin's job: the operator has no delete form.
  await expect(page.locator('form[action$="/actions/delete"]')).toHaveCount(0);
  expect((await getPolicy(request, search.policy_name)).canary_version).toBe('v2');
  await context.close();
});

test('an admin creates a policy and an API token; the audit trail names who did each', async ({ page, request }, info) => {
  const name = uniqueName('admin-made');
  await page.goto('/policies/new');
  await page.getByLabel(/^Policy name/).fill(name);
  await page.getByLabel('Stable version').fill('v1');
  await page.getByLabel(/^Canary version/).fill('v2');
  await page.getByLabel(/^Canary share/).fill('5');
  await page.getByRole('button', { name: 'Create policy' }).click();
  await expect(page.locator('.flash.notice')).toContainText(`Policy '${name}' created.`);
  await expect(page.locator('table.history')).toContainText('e2e-admin (password)');

  await page.goto('/admin/tokens');
  await page.getByLabel('Name', { exact: true }).fill(`ci-${info.project.name}-${Date.now() % 100000}`);
  await page.getByLabel('Role').selectOption('operator');
  await page.getByRole('button', { name: 'Create token' }).click();
  const token = (await page.locator('[data-test="new-token"]').textContent())!.trim();
  expect(token).toMatch(/^apxc_/);
  const config = await getPolicy(request, name);
  const res = await request.put(`/api/v1/policies/${name}/share`, {
    data: { share: '7', reason: 'from CI' },
    headers: { authorization: `Bearer ${token}`, 'if-match': `"${config.revision}"` },
  });
  expect(res.status(), await res.text()).toBe(200);
  const events = await (await request.get(`/api/v1/policies/${name}/events`, { headers: auth() })).json();
  expect(events[0].actor).toMatch(/^ci-.* \(token\)$/);
  expect(events[1].actor).toBe('e2e-admin (password)');
  await page.goto(`/policies/${name}`);
  await expect(page.locator('table.history')).toContainText('(token)');
});

test('signed out, pages send you to the sign-in page and back', async ({ browser }, info) => {
  // Playwright applies the project's signed-in state to new contexts unless told otherwise.
  const context = await browser.newContext({
    baseURL: info.project.use.baseURL, javaScriptEnabled: info.project.use.javaScriptEnabled,
    storageState: { cookies: [], origins: [] },
  });
  const page = await context.newPage();
  await page.goto('/policies/new');
  await expect(page).toHaveURL(/\/signin\?next=%2Fpolicies%2Fnew$/);
  await page.getByLabel('Account').fill('e2e-viewer');
  await page.getByLabel('Password').fill('wrong password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.locator('.flash.error')).toContainText('Wrong account or password.');
  await page.getByLabel('Account').fill('e2e-viewer');
  await page.getByLabel('Password').fill('e2e password 1234');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page).toHaveURL(/\/policies\/new$/);
  await expect(page.locator('[data-test="read-only"]')).toHaveText('read-only: viewer');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page.locator('.flash.notice')).toContainText('Signed out.');
  await page.goto('/');
  await expect(page).toHaveURL(/\/signin/);
  await context.close();
});
