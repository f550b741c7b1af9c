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

/** The whole client, minified and gzipped (level 9), must fit in this many bytes. */
export const SIZE_BUDGET = 6 * 1024;

const here = (path) => new URL(path, import.meta.url);
const banner = '/* rtlink browser client, MIT license; source: js-client/src */';
const outputs = {
  esm: ['dist/rtlink.mjs', '../rtlink/static/client.mjs'],
  iife: ['dist/rtlink.js', '../rtlink/static/client.js'],
};

export async function bundle(format) {
  const result = await build({
    entryPoints: [here('src/index.js').pathname],
    bundle: true,
    minify: true,
    format,
    globalName: format == 'iife' ? 'rtlink' : undefined,
    target: 'es2020',
    // Internal members are named _like_this: they are renamed to short names in the
    // build (the public API, the options and the wire fields never start with _).
    mangleProps: /^_[a-z]/,
    banner: { js: banner },
    write: false,
  });
  return result.outputFiles[0].text;
}

/** Size of `code` after gzip -9, as the budget counts it. */
export const gzipSize = (code) => gzipSync(code, { level: 9 }).length;

const check = process.argv.includes('--check');
let failed = false;
for (const [format, paths] of Object.entries(outputs)) {
  const code = await bundle(format);
  const size = gzipSize(code);
  console.log(`${paths[0]}: ${code.length} bytes minified, ${size} bytes min+gzip (budget ${SIZE_BUDGET})`);
  if (size > SIZE_BUDGET) {
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
