// --sim-envd-listen / CHSIM_ENVD_LISTEN: the stand-in envd listens where it is told
// (the guest's address inside a sandbox's namespace in the host tests). A wrong
// address must stop the simulator rather than fall back to loopback silently.
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';
import { parseCommandLine } from '../../drivers/vmm/sim/cli.ts';
import { spawnSim } from './harness.ts';

const base = ['--api-socket', '/tmp/x.sock'];

test('the envd address comes from the flag, else the environment, else loopback', () => {
  assert.deepEqual(parseCommandLine([...base, '--sim-envd-listen', '169.254.0.21:49983'], {}).sim.envdListen, { host: '169.254.0.21', port: 49983 });
  assert.deepEqual(parseCommandLine(base, { CHSIM_ENVD_LISTEN: '127.0.0.3:8000' }).sim.envdListen, { host: '127.0.0.3', port: 8000 });
  assert.equal(parseCommandLine(base, {}).sim.envdListen, undefined);
});

test('an envd address that is not IPv4:PORT is refused', () => {
  for (const bad of ['localhost:80', '1.2.3.4', '1.2.3.256:80', '1.2.3.4:0', '1.2.3.4:70000', '[::1]:80', '1.2.3.4:80 ']) {
    assert.throws(() => parseCommandLine([...base, '--sim-envd-listen', bad], {}), /invalid --sim-envd-listen/, bad);
  }
});

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.2', resolve));
  const { port } = srv.address() as { port: number };
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

test('the stand-in envd answers at the address it was given and writes that URL to <socket>.envd', async (t) => {
  const port = await freePort();
  const sim = await spawnSim(t, { env: { CHSIM_ENVD_LISTEN: `127.0.0.2:${port}` } });
  assert.equal(sim.envdUrl(), `http://127.0.0.2:${port}`);
  const res = await fetch(`http://127.0.0.2:${port}/health`, { signal: AbortSignal.timeout(5000) });
  assert.equal(res.status, 200);
});
