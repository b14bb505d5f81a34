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

test('pages and the app bundle arrive compressed', async ({ page }) => {
  const wasm = page.waitForResponse(/\.wasm$/).catch(() => null);
  const doc = (await page.goto('/'))!;
  expect(doc.headers()['content-encoding']).toMatch(/^(br|gzip)$/);
  if (test.info().project.use.javaScriptEnabled) {
    const w = (await wasm)!;
    expect(w.headers()['content-encoding']).toMatch(/^(br|gzip)$/);
  }
});
