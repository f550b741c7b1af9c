// Builds the client: dist/rtlink.mjs (ES module) and dist/rtlink.js (script tag,
// global `rtlink`), both minified, and copies them into the Python package, which
// serves them at {path}/client.mjs and {path}/client.js.
//
//   node build.mjs           build and write the files
//   node build.mjs --check   fail if the written files differ from a fresh build
//                            (someone changed src/ without rebuilding) or if the
//                            client outgrew its size budget
import { build } from 'esbuild';
import { readFileSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { minify } from 'terser';

/** The whole client, minified and gzipped (level 9), must fit in this many bytes:
 * 6 KiB, plus 1 KiB for the tabs sharing one connection (issue 22, src/tabs.js). */
export const SIZE_BUDGET = 7 * 1024;

const here = (path) => new URL(path, import.meta.url);
const outputs = {
  esm: ['dist/rtlink.mjs', '../rtlink/static/client.mjs'],
  iife: ['dist/rtlink.js', '../rtlink/static/client.js'],
  // Opt-in modules (package.json "exports"): not in the budget, their size reported.
  history: ['dist/history.mjs'],
  presence: ['dist/presence.mjs'],
  // The presence module as the server serves it, at {path}/presence.mjs next to
  // {path}/client.mjs, which it imports (the core's RtlinkError, isTemporary).
  presenceServed: ['../rtlink/static/presence.mjs'],
};

/** Minified by esbuild, then by terser: terser renames the variables by how often
 * they are used and compresses again, which saves about 190 bytes after gzip (3%)
 * on top of esbuild alone. Two of terser's "unsafe" rewrites hold for this code and
 * save 17 bytes: unsafe_comps (a < b as b > a: the client compares only numbers and
 * strings, no object whose valueOf has effects) and unsafe_arrows (a function
 * expression that uses no `this` as an arrow: the client calls none with `new` and
 * reads no `arguments`). (A new object each time: terser changes the one given.) */
const terser = (code, module) =>
  minify(code, { ecma: 2022, module, compress: { passes: 2, unsafe_comps: true, unsafe_arrows: true }, mangle: true });

/** The short names esbuild gave the internal members in the main build, for the
 * opt-in modules that use some of them (history.js reads the client's URL). */
let mangleCache = {};

/** The minified ES module build of `entry`; `external` maps imports left to the
 * main build's file (an opt-in module's import of the client itself). */
async function esmBuild(entry = 'src/index.js', external = {}) {
  const result = await build({
    entryPoints: [here(entry).pathname],
    bundle: true,
    minify: true,
    format: 'esm',
    target: 'es2022',
    // Internal members are named _like_this: they are renamed to short names in the
    // build (the public API, the options and the wire fields never start with _).
    mangleProps: /^_[a-z]/,
    mangleCache,
    plugins: [{
      name: 'external',
      setup: (on) => on.onResolve({ filter: /^\.\// }, ({ path }) =>
        external[path] ? { path: external[path], external: true } : undefined),
    }],
    write: false,
  });
  mangleCache = result.mangleCache;
  return (await terser(result.outputFiles[0].text, true)).code;
}

/** The script-tag build: the ES module build with its export statement turned into
 * the value of the global `rtlink`. (esbuild's own IIFE format adds ~200 bytes of
 * export helpers after gzip.) */
async function scriptTagBuild(esm) {
  const body = esm.replace(/export\s*\{([^}]*)\};?\s*$/, (_, names) => {
    const pairs = names.split(',').map((entry) => {
      const [local, , exported = local] = entry.trim().split(/\s+/);
      return `${exported}:${local}`;
    });
    return `return{${pairs}}`;
  });
  if (body == esm) throw new Error('no export statement at the end of the ES module build');
  return (await terser(`var rtlink=(()=>{${body}})();`, false)).code;
}

/** Size of `code` after gzip -9, as the budget counts it. */
export const gzipSize = (code) => gzipSync(code, { level: 9 }).length;

const check = process.argv.includes('--check');
let failed = false;
const esm = await esmBuild();
const builds = { esm, iife: await scriptTagBuild(esm) };
// Opt-in modules (not in the budget, measured): they import the main build's file.
for (const name of ['history', 'presence']) {
  builds[name] = await esmBuild(`src/${name}.js`, { './index.js': './rtlink.mjs' });
}
builds.presenceServed = await esmBuild('src/presence.js', { './index.js': './client.mjs' });
for (const [format, paths] of Object.entries(outputs)) {
  const code = builds[format];
  const size = gzipSize(code);
  const optIn = format != 'esm' && format != 'iife';
  console.log(`${paths[0]}: ${code.length} bytes minified, ${size} bytes min+gzip` +
              (optIn ? ' (opt-in module)' : ` (budget ${SIZE_BUDGET})`));
  if (!optIn && size > SIZE_BUDGET) {
    console.error(`${paths[0]} is over the size budget by ${size - SIZE_BUDGET} bytes`);
    failed = true;
  }
  for (const path of paths) {
    if (!check) writeFileSync(here(path), code);
    else if (readFileSync(here(path), 'utf8') != code) {
      console.error(`${path} is out of date: run 'npm run build' in js-client/`);
      failed = true;
    }
  }
}
process.exitCode = failed ? 1 : 0;
