import { expect, test } from '@playwright/test';
import { createPolicy, uniqueName, waitHydrated } from './helpers';

// Runs in the hydrated project only (see playwright.config.ts).
test('pages hydrate without errors and navigate client-side @hydration', async ({ page, request }) => {
  const name = uniqueName('hydrate');
  await createPolicy(request, name, '5');
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('response', (r) => { if (r.status() >= 400) errors.push(`${r.status()} ${r.url()}`); });
  await page.goto(`/?q=${name}`);
  await waitHydrated(page);
  // A full page load would drop this marker; the hydrated router keeps it.
  await page.evaluate(() => { (window as any).__stillHere = true; });
  await page.getByRole('link', { name }).click();
  await expect(page).toHaveURL(new RegExp(`/policies/${name}$`));
  await expect(page.locator('dd[data-test="share"]')).toContainText('5%');
  expect(await page.evaluate(() => (window as any).__stillHere === true)).toBe(true);
  expect(errors).toEqual([]);
});
