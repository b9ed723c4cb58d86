import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { sandboxMachine } from '../../machines/sandbox/machine.ts';
import { machineDefinition } from '../../server/inspect/definition.ts';
import { machineGraph } from '../../server/inspect/graph.ts';
import { startInspectAgent, TEAM_A, TEAM_B } from './support/agent.ts';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const ARTIFACT = join(import.meta.dirname, '..', '..', 'test-artifacts', 'inspector.png');

interface Hooks {
  ready: boolean;
  trail: string[];
  selected: string | null;
}

async function openInspector(context: BrowserContext, base: string, token: string, errors: string[]): Promise<Page> {
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (err) => errors.push(err.message));
  await page.setViewportSize({ width: 1440, height: 900 });
  await page.goto(`${base}/inspect`);
  await page.fill('#token', token);
  await page.click('#login button[type=submit]');
  await page.waitForFunction(() => (globalThis as unknown as { inspector: Hooks }).inspector.ready, null, { timeout: 20_000 });
  return page;
}

const trailOf = (page: Page) => page.evaluate(() => (globalThis as unknown as { inspector: Hooks }).inspector.trail.slice());
const activeOf = (page: Page) => page.$$eval('#chart svg .state.active', (els) => els.map((e) => e.getAttribute('data-id')));
const listedIds = (page: Page) => page.$$eval('#sandboxes tbody tr', (rows) => rows.map((r) => r.getAttribute('data-id')));

/** Chromium on a fresh profile dir, removed once the browser is closed (a live one writes into it again). */
async function launchBrowser(t: TestContext): Promise<BrowserContext> {
  const userDataDir = mkdtempSync(join(tmpdir(), 'sandboxd-test-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, { executablePath: CHROMIUM, args: ARGS, headless: true }).catch((err: unknown) => {
    rmSync(userDataDir, { recursive: true, force: true });
    throw err;
  });
  t.after(async () => {
    await context.close();
    rmSync(userDataDir, { recursive: true, force: true });
  });
  return context;
}

test('inspector page: chart, live pause trail, team isolation, no console errors', { timeout: 90_000 }, async (t) => {
  const agent = await startInspectAgent({ latencyMs: 25 });
  t.after(() => agent.close());
  const context = await launchBrowser(t);

  const errors: string[] = [];
  const page = await openInspector(context, agent.base, agent.tokens.a, errors);

  // Every state of the machine is drawn.
  const graph = machineGraph(machineDefinition(sandboxMachine));
  const drawn = await page.$$eval('#chart svg .state', (els) => els.map((e) => e.getAttribute('data-id')));
  assert.deepEqual(new Set(drawn), new Set(graph.nodes.map((n) => n.id)), 'chart states differ from the machine');
  assert.equal(drawn.length, graph.nodes.length);

  // A sandbox created over the API shows up; selecting it shows where it is.
  const a = await agent.connect('a');
  const { sandbox } = await a.call('sandbox.create', { templateId: 'base' });
  await page.waitForSelector(`#sandboxes tbody tr[data-id="${sandbox.id}"]`);
  await page.click(`#sandboxes tbody tr[data-id="${sandbox.id}"]`);
  await page.waitForSelector('#chart svg .state.active[data-id^="sandbox.running."]');
  const before = (await trailOf(page)).length;

  // The supervisor's own record of the steps, independent of the feed.
  const steps: string[] = [];
  const off = agent.supervisor.onState((c) => {
    if (c.sandboxId === sandbox.id) steps.push(`sandbox.${c.step}`);
  });
  t.after(off);
  await a.call('sandbox.pause', { id: sandbox.id });
  await page.waitForSelector('#chart svg .state.active[data-id="sandbox.paused"]', { timeout: 10_000 });

  const trail = (await trailOf(page)).slice(before).filter((x, i, all) => i === 0 || all[i - 1] !== x);
  assert.deepEqual(trail, steps, 'the highlight did not pass through the same steps, in order, as the supervisor');
  const pausing = ['waitMemoryLoader', 'quiesce', 'probeVm', 'pauseVm', 'makeStaging', 'snapshotVm', 'punchZeroPages', 'writePauseMeta', 'commit.stageCow', 'commit.swapIn'];
  let at = -1;
  for (const s of pausing) {
    const i = trail.indexOf(`sandbox.pausing.${s}`);
    assert.ok(i > at, `pausing.${s} not highlighted after the previous step (trail: ${trail.join(' → ')})`);
    at = i;
  }
  assert.equal(trail.at(-1), 'sandbox.paused');
  assert.deepEqual(await activeOf(page), ['sandbox.paused'], 'the highlight must stop on Paused');
  // Readable without colour: the active state carries a marker and aria-current.
  assert.equal(await page.$eval('#chart svg .state.active text', (e) => e.textContent), '▶ paused');
  assert.equal(await page.$eval('#chart svg .state.active', (e) => e.getAttribute('aria-current')), 'step');
  assert.deepEqual(await page.$$eval('#chart svg .edge.last', (els) => els.map((e) => e.getAttribute('data-target'))), ['sandbox.paused']);
  assert.match(await page.textContent('#current') ?? '', /paused/);
  const logged = await page.$$eval('#log tbody tr td.what', (tds) => tds.map((td) => td.textContent));
  assert.ok(logged.includes('PAUSE'), 'the PAUSE command is in the event log');
  await page.waitForSelector('#supervisor dd:text-matches("paused 1")', { timeout: 5_000 });

  // A second team's page sees only its own sandboxes, and team A's page never sees B's.
  const b = await agent.connect('b');
  const { sandbox: sbB } = await b.call('sandbox.create', { templateId: 'base' });
  const pageB = await openInspector(context, agent.base, agent.tokens.b, errors);
  await pageB.waitForSelector(`#sandboxes tbody tr[data-id="${sbB.id}"]`);
  assert.deepEqual(await listedIds(pageB), [sbB.id]);
  assert.equal(await pageB.textContent(`#sandboxes tbody tr[data-id="${sbB.id}"] td:nth-child(2)`), TEAM_B);
  await b.call('sandbox.pause', { id: sbB.id });
  // Entries reach a connection in the order they were recorded: once A's next sandbox shows, B's would have.
  const { sandbox: a2 } = await a.call('sandbox.create', { templateId: 'base' });
  await page.waitForSelector(`#sandboxes tbody tr[data-id="${a2.id}"]`);
  assert.deepEqual(new Set(await listedIds(page)), new Set([sandbox.id, a2.id]), 'team A sees a team B sandbox');
  await page.click(`#sandboxes tbody tr[data-id="${sandbox.id}"]`);
  await page.waitForSelector('#chart svg .state.active[data-id="sandbox.paused"]');
  assert.equal(await page.textContent(`#sandboxes tbody tr[data-id="${sandbox.id}"] td:nth-child(2)`), TEAM_A);

  mkdirSync(join(ARTIFACT, '..'), { recursive: true });
  await page.screenshot({ path: ARTIFACT.replace(/\.png$/, '-focus.png') });
  await page.click('#zoom-fit');
  await page.screenshot({ path: ARTIFACT });
  assert.deepEqual(errors, [], 'console errors on the page');
});

test('inspector page: a refused token asks again and is not kept', { timeout: 60_000 }, async (t) => {
  const agent = await startInspectAgent();
  t.after(() => agent.close());
  const context = await launchBrowser(t);
  const page = await context.newPage();
  await page.goto(`${agent.base}/inspect`);
  await page.fill('#token', 'sbxt-not-a-real-token');
  await page.click('#login button[type=submit]');
  await page.waitForSelector('#login-error:not(:empty)');
  assert.equal(await page.evaluate(() => (globalThis as unknown as { sessionStorage: { getItem(k: string): string | null } }).sessionStorage.getItem('sandboxd.token')), null);
  assert.equal(await page.isHidden('#main'), true);
});
