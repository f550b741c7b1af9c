// The package as its users get it: resolved by name through package.json "exports"
// (not by relative path, as the other tests import the sources) from CommonJS, from ES
// modules and by a bundler; the script-tag build; and what `npm pack` puts in the tarball.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { build } from 'esbuild';

const packageDir = fileURLToPath(new URL('..', import.meta.url));
const pkg = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8'));

/**
 * A directory outside the repository whose node_modules/rtlink-client links to this
 * package, so that `require('rtlink-client')` there resolves as for an installed
 * copy. Removed when the test ends.
 */
function consumer(t) {
  const dir = mkdtempSync(join(tmpdir(), 'rtlink-client-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'node_modules'));
  symlinkSync(packageDir, join(dir, 'node_modules', 'rtlink-client'), 'dir');
  return dir;
}

/** Runs `code` as a CommonJS file in `dir` with node (plus `flags`): its exit status,
 * stdout and stderr. */
function runCommonJs(dir, code, flags = []) {
  writeFileSync(join(dir, 'main.cjs'), code);
  return spawnSync(process.execPath, [...flags, 'main.cjs'], { cwd: dir, encoding: 'utf8' });
}

// Prints what require() gave and whether it is the very module import() gives: one
// copy of the client, so `instanceof RtlinkError` holds whichever way it was loaded.
const REQUIRE_AND_IMPORT = `
const client = require('rtlink-client');
const codes = require('rtlink-client/codes');
Promise.all([import('rtlink-client'), import('rtlink-client/codes')]).then(([esm, esmCodes]) => {
  console.log(JSON.stringify({
    client: Object.keys(client).sort(),
    codes: Object.keys(codes).sort(),
    sameClient: client.Client === esm.Client && client.RtlinkError === esm.RtlinkError,
    sameCodes: codes.CloseCode === esmCodes.CloseCode,
  }));
});
`;

test("require('rtlink-client') gives the client itself where Node can require() ES modules", (t) => {
  if (!process.features.require_module) {
    t.skip(`node ${process.version} cannot require() ES modules (20.19+ and 22.12+ can)`);
    return;
  }
  const run = runCommonJs(consumer(t), REQUIRE_AND_IMPORT);
  assert.equal(run.status, 0, run.stderr);
  assert.deepEqual(JSON.parse(run.stdout), {
    client: ['Client', 'RtlinkError', 'Subscription', 'forgetTransports', 'isTemporary', 'shouldReconnect'],
    codes: ['CloseCode', 'ErrorCode', 'isTemporary', 'shouldReconnect'],
    sameClient: true,
    sameCodes: true,
  });
  // No "ExperimentalWarning: ... loading ES Module ... using require()" either.
  assert.equal(run.stderr, '');
});

test("require('rtlink-client') on a Node without require(esm) fails saying to use import()", (t) => {
  const dir = consumer(t);
  // A Node that has require(esm) stands in for an older one with the flag turning it off.
  const flags = process.features.require_module ? ['--no-experimental-require-module'] : [];
  const code = `
for (const name of ['rtlink-client', 'rtlink-client/codes']) {
  try {
    console.log(name, 'gave', Object.keys(require(name)));
  } catch (error) {
    console.log(name, error.code, error.message.includes('dynamic import()'));
  }
}
`;
  const run = runCommonJs(dir, code, flags);
  if (/bad option|not allowed/.test(run.stderr)) {
    t.skip(`node ${process.version} has no ${flags[0]}`);
    return;
  }
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout, 'rtlink-client ERR_REQUIRE_ESM true\nrtlink-client/codes ERR_REQUIRE_ESM true\n');
});

test('import of the package by name gives the built ES module', (t) => {
  const dir = consumer(t);
  writeFileSync(join(dir, 'main.mjs'), `
import * as client from 'rtlink-client';
console.log(import.meta.resolve('rtlink-client'), typeof client.Client);
`);
  const run = spawnSync(process.execPath, ['main.mjs'], { cwd: dir, encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  const [url, type] = run.stdout.trim().split(' ');
  assert.ok(url.endsWith('/dist/rtlink.mjs'), url);
  assert.equal(type, 'function');
});

test("the opt-in 'rtlink-client/presence' works with the built client (public names only)", (t) => {
  const dir = consumer(t);
  writeFileSync(join(dir, 'main.mjs'), `
import { Client } from 'rtlink-client';
import { presence } from 'rtlink-client/presence';
const sent = [];
const client = new Client('http://test/rt', { shareConnection: false, storage: null });
client.state = 'connected';
client.send = (frame) => sent.push(frame);
const read = presence(client, 'room');
client.onframe({ type: 'presence', id: sent[0].id, channel: 'room', count: 1, members: [] });
read.then((answer) => console.log(sent[0].type, answer.count));
`);
  const run = spawnSync(process.execPath, ['main.mjs'], { cwd: dir, encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout.trim(), 'presence 1');
});

test("a bundler (esbuild, for the browser) resolves both import and require('rtlink-client') to the client", async (t) => {
  const dir = consumer(t);
  for (const contents of [
    "import { Client } from 'rtlink-client'; globalThis.found = typeof Client;",
    "globalThis.found = typeof require('rtlink-client').Client;",
  ]) {
    const result = await build({
      stdin: { contents, resolveDir: dir },
      bundle: true,
      platform: 'browser',
      format: 'iife',
      write: false,
      logLevel: 'silent',
    });
    const found = new Function(`${result.outputFiles[0].text}\nreturn globalThis.found;`)();
    delete globalThis.found;
    assert.equal(found, 'function', contents);
  }
});

test('the "browser" field is the script-tag build: a classic script defining the global rtlink', () => {
  assert.equal(pkg.browser, './dist/rtlink.js');
  const script = readFileSync(join(packageDir, pkg.browser), 'utf8');
  // A function body is a script, not a module: its top-level var is what a <script>
  // tag would have made a global.
  const rtlink = new Function(`${script}\nreturn rtlink;`)();
  assert.equal(typeof rtlink.Client, 'function');
  assert.equal(typeof rtlink.RtlinkError, 'function');
});

test('npm pack: LICENSE, README, the builds, the sources and the types, nothing else', (t) => {
  const run = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: packageDir,
    encoding: 'utf8',
  });
  if (run.error?.code == 'ENOENT') {
    t.skip('npm is not installed');
    return;
  }
  assert.equal(run.status, 0, run.stderr);
  const files = JSON.parse(run.stdout)[0].files.map(({ path }) => path);
  const wanted = [
    'LICENSE', 'README.md', 'package.json', 'index.d.ts', 'codes.d.ts', 'history.d.ts',
    'presence.d.ts', 'dist/rtlink.mjs', 'dist/rtlink.js', 'dist/history.mjs', 'dist/presence.mjs',
    'src/index.js', 'src/codes.js', 'src/history.js', 'src/presence.js',
  ];
  for (const file of wanted) assert.ok(files.includes(file), `${file} is in the package`);
  // Whatever else is there must be more of the sources: no tests, no build script.
  const shipped = /^(LICENSE|README\.md|package\.json|[a-z]+\.d\.ts|dist\/(rtlink|history|presence)\.m?js|src\/[a-z]+\.js)$/;
  assert.deepEqual(files.filter((file) => !shipped.test(file)), []);
  const license = (dir) => readFileSync(join(dir, 'LICENSE'), 'utf8');
  assert.equal(license(packageDir), license(join(packageDir, '..')), 'js-client/LICENSE is the repository LICENSE');
});

test("'rtlink-client/history' is the built module, on the client's own RtlinkError", (t) => {
  const dir = consumer(t);
  writeFileSync(join(dir, 'main.mjs'), `
import { Client, RtlinkError } from 'rtlink-client';
import { history } from 'rtlink-client/history';
const client = new Client('http://127.0.0.1:9/rt');
const error = await history(client, 'c', { limit: 0 }).catch((error) => error);
client.close();
const closed = await history(client, 'c').catch((error) => error);
console.log(JSON.stringify({ same: error instanceof RtlinkError, name: error.name,
  closed: closed instanceof RtlinkError && closed.name }));
`);
  const run = spawnSync(process.execPath, ['main.mjs'], { cwd: dir, encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  assert.deepEqual(JSON.parse(run.stdout), {
    same: true, name: 'InvalidInput', closed: 'ClientClosed',
  });
});
