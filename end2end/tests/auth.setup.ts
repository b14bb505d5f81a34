import { expect, test as setup } from '@playwright/test';
import { authFile } from '../playwright.config';
import { ACCOUNTS } from './helpers';

// The accounts end2end/start-server.sh created, signed in through the real sign-in page; each
// one's cookies are kept for the tests that act as it.
setup('sign in the e2e accounts', async ({ browser, baseURL }) => {
  const port = Number(new URL(baseURL!).port);
  for (const name of Object.keys(ACCOUNTS)) {
    const context = await browser.newContext({ baseURL });
    const page = await context.newPage();
    await page.goto('/signin');
    await page.getByLabel('Account').fill(name);
    await page.getByLabel('Password').fill(ACCOUNTS[name]);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect(page.locator('[data-test="who"]')).toContainText(name);
    await context.storageState({ path: authFile(name, port) });
    await context.close();
  }
});
