import { APIRequestContext, expect, Page } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import path from 'node:path';

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
    headers: { 'x-actor': 'e2e' },
  });
  expect(res.status(), await res.text()).toBe(201);
  return res.json();
}

export async function getPolicy(request: APIRequestContext, name: string): Promise<Config> {
  const res = await request.get(`/api/v1/policies/${name}`);
  expect(res.status()).toBe(200);
  return res.json();
}

/** Fills who/why (and the confirmation, if the form has one) inside `form`. */
export async function sign(page: Page, formSelector: string, actor = 'e2e-operator', reason = 'e2e test') {
  const form = page.locator(formSelector);
  await form.getByLabel('Your name').fill(actor);
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
  await page.goto(url);
  await waitHydrated(page);
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
