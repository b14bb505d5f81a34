import { expect, test } from '@playwright/test';

// The embedded e2e server runs with the built-in demo traffic on (as `./dev run` does): the
// first pages a new user opens show traffic that keeps coming, and demo-payment-api's canary
// fails some requests while its stable version fails none.

test('the demo policies have live traffic from the first page', async ({ page }) => {
  await page.goto('/');
  await expect(page.locator('tr[data-policy="demo-payment-api"] [data-test="observed"]')).toContainText('canary of');

  const requests = async () => {
    await page.goto('/policies/demo-payment-api');
    return Number(await page.getByTestId('traffic-requests').innerText());
  };
  const first = await requests();
  expect(first).toBeGreaterThan(0);
  // Moving: a later look shows more (the recorder flushes every second here).
  await expect.poll(requests, { timeout: 20_000 }).toBeGreaterThan(first);
  await expect(page.getByTestId('chart-rps')).not.toContainText('No requests recorded');
});

test('the demo canary of demo-payment-api is slightly worse than its stable version', async ({ page }) => {
  await page.goto('/policies/demo-payment-api');
  const errors = (v: string) => page.locator(`tr[data-version="${v}"]`).getByTestId('errors');
  await expect(async () => {
    await page.reload();
    expect(Number(await errors('v2').innerText())).toBeGreaterThan(0);
  }).toPass({ timeout: 60_000 });
  await expect(errors('v1')).toHaveText('0');
});
