import { APIRequestContext, Browser, expect, Page, test } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { authFile } from '../playwright.config';

/** The accounts end2end/start-server.sh creates in every e2e server's store, with passwords. */
export const ACCOUNTS: Record<string, string> = {
  'e2e-admin': 'e2e password 1234',
  'e2e-viewer': 'e2e password 1234',
  'e2e-ops': 'e2e password 1234',
};

function port(): number {
  return Number(new URL(test.info().project.use.baseURL!).port);
}

/** `Authorization` for the JSON API: the admin token start-server.sh made for this server. */
export function auth(): Record<string, string> {
  const file = path.resolve(__dirname, `../../target/e2e-token-${port()}`);
  return { authorization: `Bearer ${readFileSync(file, 'utf8').trim()}` };
}

/** A new browser context signed in as `account` (JavaScript as in the current project). */
export async function contextAs(browser: Browser, account: string) {
  const use = test.info().project.use;
  return browser.newContext({
    baseURL: use.baseURL,
    javaScriptEnabled: use.javaScriptEnabled,
    storageState: path.resolve(__dirname, '..', authFile(account, port())),
  });
}

let counter = 0;
/** A policy name no other test uses. */
export function uniqueName(prefix: string): string {
  counter += 1;
  return `${prefix}-${process.pid}-${Date.now() % 1_000_000}-${counter}`;
}

export interface Config {
  policy_name: string;
  stable_version: string;
  canary_version: string | null;
  canary_basis_points: number;
  salt: string;
  revision: number;
}

/** Creates a policy through the JSON API and returns it. */
export async function createPolicy(request: APIRequestContext, name: string, share = '10', canary: string | null = 'v2'): Promise<Config> {
  const res = await request.post('/api/v1/policies', {
    data: { name, stable_version: 'v1', canary_version: canary, share, reason: 'e2e setup' },
    headers: auth(),
  });
  expect(res.status(), await res.text()).toBe(201);
  return res.json();
}

export async function getPolicy(request: APIRequestContext, name: string): Promise<Config> {
  const res = await request.get(`/api/v1/policies/${name}`, { headers: auth() });
  expect(res.status()).toBe(200);
  return res.json();
}

/** Fills the reason (and the confirmation, if the form has one) inside `form`; who signs is
 * the signed-in account. */
export async function sign(page: Page, formSelector: string, reason = 'e2e test') {
  const form = page.locator(formSelector);
  await form.getByLabel(/^Reason/).fill(reason);
  const confirm = form.locator('input[name="confirm"]');
  if (await confirm.count()) await confirm.check();
  return form;
}

/** Assignments the `splitter assign` CLI computes for these tenants (independent of the page). */
export function cliAssignments(policy: string, salt: string, percent: string, tenants: string[]): Map<string, string> {
  const bin = path.resolve(__dirname, '../../target/debug/splitter');
  const out = execFileSync(bin, ['assign', '--policy', policy, '--salt', salt, '--percent', percent], {
    input: tenants.join('\n') + '\n',
    maxBuffer: 256 * 1024 * 1024,
  }).toString();
  const rows = out.trim().split('\n').slice(1).map((l) => l.split(','));
  return new Map(rows.map(([t, , a]) => [t, a]));
}

/**
 * Opens `url` and waits until the page has hydrated and its live stream is open: the app marks
 * both on `<html>` (`data-hydrated="true"` right after hydration, `data-live="open"` when the
 * server-sent events stream is connected), so this waits on events, not on time.
 */
export async function gotoHydrated(page: Page, url: string) {
  // Every Content-Security-Policy violation on the page is collected and must stay none.
  await page.addInitScript(() => {
    (window as any).__cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) =>
      (window as any).__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  await page.goto(url);
  await waitHydrated(page);
  expect(await page.evaluate(() => (window as any).__cspViolations)).toEqual([]);
}

/** Waits for the markers `gotoHydrated` waits for, after a navigation the test made itself. */
export async function waitHydrated(page: Page) {
  const html = page.locator('html');
  await expect(html).toHaveAttribute('data-hydrated', 'true', { timeout: 30_000 });
  await expect(html).toHaveAttribute('data-live', 'open');
}

/** How many live refreshes the policy page has handled (shown or found unchanged). */
export async function liveRefreshes(page: Page): Promise<number> {
  return Number(await page.locator('.policy-page').getAttribute('data-live-refreshes'));
}
