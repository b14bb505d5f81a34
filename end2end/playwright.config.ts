import { defineConfig } from '@playwright/test';

// Two servers built by `./dev test`: one on the embedded store, one on the Firestore emulator
// (FIRESTORE_EMULATOR_HOST is exported by ./dev). Every page is tested with JavaScript off
// (plain forms) and on (hydrated).
const root = '..';
const embeddedPort = 3100;
const firestorePort = 3101;
const firestoreProject = `e2e-${Date.now()}`;
const chromium = {
  browserName: 'chromium' as const,
  launchOptions: {
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  },
};

export default defineConfig({
  testDir: './tests',
  timeout: 60_000,
  fullyParallel: false,
  workers: 2,
  reporter: [['list']],
  outputDir: './test-results',
  use: { screenshot: 'only-on-failure', trace: 'off', testIdAttribute: 'data-test' },
  projects: [
    { name: 'js-off', use: { ...chromium, javaScriptEnabled: false, baseURL: `http://127.0.0.1:${embeddedPort}` }, grepInvert: /@hydration/ },
    { name: 'hydrated', use: { ...chromium, javaScriptEnabled: true, baseURL: `http://127.0.0.1:${embeddedPort}` } },
    { name: 'firestore', use: { ...chromium, javaScriptEnabled: false, baseURL: `http://127.0.0.1:${firestorePort}` }, grep: /@store/ },
  ],
  webServer: [
    {
      command: `./target/debug/apx-canary --addr 127.0.0.1:${embeddedPort} --data-dir target/e2e-data-${Date.now()} --traffic-flush-secs 1`,
      cwd: root,
      url: `http://127.0.0.1:${embeddedPort}/healthz`,
      reuseExistingServer: false,
      timeout: 60_000,
      stdout: 'ignore',
      stderr: 'pipe',
    },
    {
      command: `./target/debug/apx-canary --addr 127.0.0.1:${firestorePort} --firestore-project ${firestoreProject} --traffic-flush-secs 1`,
      cwd: root,
      url: `http://127.0.0.1:${firestorePort}/healthz`,
      reuseExistingServer: false,
      timeout: 60_000,
      stdout: 'ignore',
      stderr: 'pipe',
    },
  ],
});
