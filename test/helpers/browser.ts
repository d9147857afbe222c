/**
 * Dashboard tests: a built web app, a headless Debian chromium (playwright-core), pages that
 * sign in through the form, and a screenshot per test in test-results/screenshots (git-ignored;
 * `SLIPWAY_SCREENSHOTS=docs/screenshots` refreshes the README's). The browser is closed by
 * the caller's after hook; a missing chromium fails with what to install.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { repoRoot, requireCommands, run } from './commands.js';

export const chromiumPath = '/usr/bin/chromium';

/** Builds web/dist when it is missing (setup.sh and `npm run build` build it otherwise). */
export async function ensureWebBuilt(): Promise<void> {
  if (existsSync(path.join(repoRoot, 'web', 'dist', 'index.html'))) return;
  await run('npx', ['--no-install', 'vite', 'build', '--config', 'web/vite.config.ts', '--logLevel', 'warn'], { cwd: repoRoot, timeoutMs: 180_000 });
}

export async function launchBrowser(): Promise<Browser> {
  await requireCommands({ chromium: 'chromium' });
  return chromium.launch({ executablePath: chromiumPath, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'], timeout: 60_000 });
}

/** A fresh browser context (own sessionStorage) with short default waits. */
export async function newPage(browser: Browser, baseURL: string): Promise<Page> {
  const context = await browser.newContext({ baseURL, viewport: { width: 1280, height: 800 } });
  context.setDefaultTimeout(15_000);
  return context.newPage();
}

export async function signIn(page: Page, username: string, password: string): Promise<void> {
  await page.goto('/sign-in');
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

export async function screenshot(page: Page, name: string): Promise<void> {
  const dir = path.resolve(repoRoot, process.env.SLIPWAY_SCREENSHOTS ?? path.join('test-results', 'screenshots'));
  await mkdir(dir, { recursive: true });
  await page.screenshot({ path: path.join(dir, `${name}.png`), fullPage: false });
}
