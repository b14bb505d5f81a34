import { expect, test } from '@playwright/test';
import { createPolicy, uniqueName } from './helpers';

test('in an incident, the split, roll back, promote and the share control are in the first screen', async ({ page, request }) => {
  await page.setViewportSize({ width: 1280, height: 800 });
  const name = uniqueName('layout');
  await createPolicy(request, name, '10');
  await page.goto(`/policies/${name}`);
  for (const control of [
    page.locator('div.split').first(),
    page.getByRole('button', { name: 'Roll back' }),
    page.getByRole('button', { name: 'Promote canary' }),
    page.getByRole('button', { name: 'Set share' }),
  ]) {
    await expect(control).toBeVisible();
    const box = (await control.boundingBox())!;
    expect(box.y + box.height, `${await control.innerText()} ends at ${box.y + box.height}px`).toBeLessThanOrEqual(800);
  }
});

test('pages and the app bundle arrive compressed; built files are hashed and cached forever', async ({ page }) => {
  const fetched: string[] = [];
  page.on('request', (r) => fetched.push(new URL(r.url()).pathname));
  const wasm = page.waitForResponse(/apx-canary\.[\w-]{22}\.wasm$/).catch(() => null);
  const doc = (await page.goto('/'))!;
  expect(doc.headers()['content-encoding']).toMatch(/^(br|gzip)$/);
  if (test.info().project.use.javaScriptEnabled) {
    const w = (await wasm)!;
    expect(w.headers()['content-encoding']).toMatch(/^(br|gzip)$/);
    expect(w.headers()['cache-control']).toBe('public, max-age=31536000, immutable');
    await expect(page.locator('html[data-hydrated="true"]')).toHaveCount(1);
    // The overview's first load leaves the other pages' code on the server...
    expect(fetched.filter((p) => p.includes('split___')), fetched.join('\n')).toEqual([]);
    // ...until one is opened: the policy page's code arrives then, and the page works.
    const chunk = page.waitForResponse(/split___policy_page_view.*\.wasm$/);
    await page.locator('tbody tr th a').first().click();
    expect((await chunk).status()).toBe(200);
    await expect(page.getByRole('heading', { level: 1 })).not.toHaveText('Policies');
    await expect(page.getByTestId('revision')).toHaveCount(1);
  }
});
