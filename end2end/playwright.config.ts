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

/** Where the setup project keeps an account's signed-in browser state for a server. */
export const authFile = (account: string, port: number) => `.auth/${account}-${port}.json`;
const signedIn = (port: number) => ({ storageState: authFile('e2e-admin', port) });
const setupFiles = /.*\.setup\.ts/;

export default defineConfig({
  testDir: './tests',
  timeout: 60_000,
  fullyParallel: false,
  workers: 2,
  reporter: [['list']],
  outputDir: './test-results',
  use: { screenshot: 'only-on-failure', trace: 'off', testIdAttribute: 'data-test' },
  projects: [
    // Signs the e2e accounts in (through the sign-in page) once per server.
    { name: 'setup-embedded', testMatch: setupFiles, use: { ...chromium, baseURL: `http://127.0.0.1:${embeddedPort}` } },
    { name: 'setup-firestore', testMatch: setupFiles, use: { ...chromium, baseURL: `http://127.0.0.1:${firestorePort}` } },
    { name: 'js-off', dependencies: ['setup-embedded'], testIgnore: setupFiles, use: { ...chromium, ...signedIn(embeddedPort), javaScriptEnabled: false, baseURL: `http://127.0.0.1:${embeddedPort}` }, grepInvert: /@hydration/ },
    { name: 'hydrated', dependencies: ['setup-embedded'], testIgnore: setupFiles, use: { ...chromium, ...signedIn(embeddedPort), javaScriptEnabled: true, baseURL: `http://127.0.0.1:${embeddedPort}` } },
    { name: 'firestore', dependencies: ['setup-firestore'], testIgnore: setupFiles, use: { ...chromium, ...signedIn(firestorePort), javaScriptEnabled: false, baseURL: `http://127.0.0.1:${firestorePort}` }, grep: /@store/ },
  ],
  webServer: [
    {
      command: `./end2end/start-server.sh ${embeddedPort} --data-dir target/e2e-data-${Date.now()}`,
      cwd: root,
      url: `http://127.0.0.1:${embeddedPort}/healthz`,
      reuseExistingServer: false,
      timeout: 60_000,
      stdout: 'ignore',
      stderr: 'pipe',
    },
    {
      command: `./end2end/start-server.sh ${firestorePort} --firestore-project ${firestoreProject}`,
      cwd: root,
      url: `http://127.0.0.1:${firestorePort}/healthz`,
      reuseExistingServer: false,
      timeout: 60_000,
      stdout: 'ignore',
      stderr: 'pipe',
    },
  ],
});
