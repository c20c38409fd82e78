/**
 * The package as users get it: `npm pack` of this folder, installed from the tarball into an empty
 * project, then used the ways `package.json` promises (`require`, `import`, the `./testing`
 * subpath, the `bin`, the TypeScript types).
 *
 * `npm run build` runs first (what `prepare` does before a real `npm pack`; a stale `dist/`, e.g. one
 * left by a bare `tsc` without `scripts/build-esm.js`, would prove nothing), then `npm pack
 * --ignore-scripts` so that it does not build twice.
 * Installing fetches `readable-stream` (the one dependency) through npm, from its cache when it can.
 * Skipped, with the reason printed, only when `npm` is not available.
 */
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '../..');
const TIMEOUT = 120_000;
/** Build + pack + install, on a loaded machine. */
const SETUP_TIMEOUT = 180_000;

const npmVersion = spawnSync('npm', ['--version'], { encoding: 'utf8', timeout: 30_000 });
const npmAvailable = npmVersion.status === 0;
if (!npmAvailable) {
  console.log(
    `spec/package skipped: npm is not available (${npmVersion.error?.message ?? npmVersion.stderr})`,
  );
}

// lib/testing is being written: its subpath is checked once it is built.
const testingBuilt = (): boolean => existsSync(path.join(ROOT, 'dist/lib/testing/index.js'));
const hasTesting = testingBuilt() || existsSync(path.join(ROOT, 'lib/testing/index.ts'));
if (npmAvailable && !hasTesting) {
  console.log(
    'spec/package: lib/testing does not exist yet: the smtp-session-stream/testing check is skipped',
  );
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a program to its end (asynchronously: jest's timers keep working). */
function run(file: string, args: string[], cwd: string, timeout = 60_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd, timeout, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
      resolve({ code, stdout, stderr: stderr || (error && error.code !== 1 ? String(error) : '') });
    });
  });
}

async function ok(file: string, args: string[], cwd: string, timeout?: number): Promise<string> {
  const result = await run(file, args, cwd, timeout);
  if (result.code !== 0) {
    throw new Error(`${file} ${args.join(' ')} exited ${result.code}:\n${result.stdout}\n${result.stderr}`);
  }
  return result.stdout;
}

interface PackResult {
  filename: string;
  files: Array<{ path: string }>;
}

(npmAvailable ? describe : describe.skip)('the npm package', () => {
  let tmp: string;
  let app: string;
  let tarball: string;
  let packed: string[];
  let installed: string;
  let manifest: {
    engines?: { node?: string };
    exports?: Record<string, unknown>;
    bin?: Record<string, string>;
  };

  beforeAll(async () => {
    await ok('npm', ['run', 'build', '--silent'], ROOT, TIMEOUT);
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'pack-spec-'));
    const out = await ok('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', tmp], ROOT);
    const [result] = JSON.parse(out) as PackResult[];
    tarball = path.join(tmp, result.filename);
    packed = result.files.map((f) => f.path).sort();

    app = path.join(tmp, 'app');
    await fs.mkdir(app);
    await ok('npm', ['init', '-y'], app);
    await ok(
      'npm',
      ['install', tarball, '--no-audit', '--no-fund', '--prefer-offline', '--no-package-lock'],
      app,
      TIMEOUT,
    );
    installed = path.join(app, 'node_modules/smtp-session-stream');
    manifest = JSON.parse(await fs.readFile(path.join(installed, 'package.json'), 'utf8'));
  }, SETUP_TIMEOUT);

  afterAll(async () => {
    if (tmp) await fs.rm(tmp, { recursive: true, force: true });
  });

  describe('the tarball', () => {
    it('holds the build, the docs and package.json only', () => {
      const allowed = /^(package\.json|README\.md|CHANGELOG\.md|LICENSE(\.md)?|dist\/lib\/.+|dist\/esm\/.+)$/;
      expect(packed.filter((f) => !allowed.test(f))).toEqual([]);
      expect(packed).toEqual(
        expect.arrayContaining(['package.json', 'dist/lib/index.js', 'dist/esm/index.mjs']),
      );
    });

    it('has no tests and no TypeScript sources except declarations', () => {
      expect(packed.filter((f) => /(^|\/)spec\//.test(f))).toEqual([]);
      expect(packed.filter((f) => /\.[cm]?ts$/.test(f) && !/\.d\.[cm]?ts$/.test(f))).toEqual([]);
    });

    it('has no private keys', async () => {
      expect(packed.filter((f) => /\.(pem|key|p12|pfx|jks)$|(^|\/)id_(rsa|ecdsa|ed25519)/.test(f))).toEqual(
        [],
      );
      // A real PEM block (header plus base64), not the word in a comment.
      const pem = /-----BEGIN [A-Z ]*PRIVATE KEY-----\r?\n[A-Za-z0-9+/=]{16,}/;
      const withKeys: string[] = [];
      for (const file of packed) {
        if (pem.test(await fs.readFile(path.join(installed, file), 'latin1'))) withKeys.push(file);
      }
      expect(withKeys).toEqual([]);
    });

    it('says it needs Node >= 20.17', () => {
      expect(manifest.engines?.node).toBe('>=20.17');
    });

    it('ships every file that `exports` and `bin` point to', () => {
      const targets: string[] = [];
      const walk = (value: unknown): void => {
        if (typeof value === 'string') targets.push(value.replace(/^\.\//, ''));
        else if (value && typeof value === 'object') Object.values(value).forEach(walk);
      };
      for (const [subpath, value] of Object.entries(manifest.exports ?? {})) {
        if (subpath === './testing' && !testingBuilt()) continue;
        walk(value);
      }
      walk(manifest.bin);
      expect(targets.filter((t) => !packed.includes(t))).toEqual([]);
    });
  });

  describe('installed from the tarball', () => {
    it('require() gives the classes', async () => {
      const out = await ok(
        process.execPath,
        [
          '-e',
          `const m = require('smtp-session-stream');
           console.log(JSON.stringify([typeof m.Protocol, typeof m.SmtpSessionStream, typeof m.SmtpServer]));`,
        ],
        app,
      );
      expect(JSON.parse(out)).toEqual(['function', 'function', 'function']);
    });

    it('import gives the same classes as require()', async () => {
      await fs.writeFile(
        path.join(app, 'esm.mjs'),
        `import { createRequire } from 'node:module';
import pkg, { Protocol, SmtpServer, SmtpSessionStream } from 'smtp-session-stream';
const require = createRequire(import.meta.url);
const cjs = require('smtp-session-stream');
console.log(JSON.stringify({
  types: [typeof Protocol, typeof SmtpServer, typeof SmtpSessionStream],
  same: Protocol === cjs.Protocol && SmtpServer === cjs.SmtpServer && SmtpSessionStream === cjs.SmtpSessionStream,
  defaultIsCjs: pkg === cjs,
}));
`,
      );
      const out = await ok(process.execPath, ['esm.mjs'], app);
      expect(JSON.parse(out)).toEqual({
        types: ['function', 'function', 'function'],
        same: true,
        defaultIsCjs: true,
      });
    });

    (hasTesting ? it : it.skip)(
      'import from smtp-session-stream/testing resolves (lib/testing)',
      async () => {
        await fs.writeFile(
          path.join(app, 'testing.mjs'),
          `import { startTestMailServer } from 'smtp-session-stream/testing';
import { createRequire } from 'node:module';
const cjs = createRequire(import.meta.url)('smtp-session-stream/testing');
console.log(JSON.stringify([typeof startTestMailServer, startTestMailServer === cjs.startTestMailServer]));
`,
        );
        const out = await ok(process.execPath, ['testing.mjs'], app);
        expect(JSON.parse(out)).toEqual(['function', true]);
      },
    );

    it('runs the bin: npx smtp-session-stream --help', async () => {
      // --no: never fetch from the registry, the installed bin must be found. `--` keeps `--help` ours.
      const result = await run('npx', ['--no', '--', 'smtp-session-stream', '--help'], app);
      expect(result).toMatchObject({ code: 0 });
      expect(result.stdout).toMatch(/^Usage: smtp-session-stream/);
    });

    const use = `
export function use(session: SmtpSessionStream, server: SmtpServer): void {
  session.end();
  session.on('error', () => undefined);
  void server;
  void Protocol;
}
`;
    const consumers: Record<string, string> = {
      'types-consumer.cts': `import { Protocol, SmtpServer, SmtpSessionStream } from 'smtp-session-stream';${use}`,
      'types-consumer.mts': `import { Protocol, SmtpServer, SmtpSessionStream } from 'smtp-session-stream';${use}`,
      'types-default.mts': `import pkg from 'smtp-session-stream';\nexport const P: unknown = pkg.Protocol;\n`,
    };
    /** A consumer on TypeScript's older `node10` resolution (no `exports`: `typesVersions` maps the subpath). */
    const node10Consumer = `import { Protocol, SmtpServer, SmtpSessionStream } from 'smtp-session-stream';
import { startTestMailServer } from 'smtp-session-stream/testing';${use}
export const start: typeof startTestMailServer = startTestMailServer;
`;
    let typesReady: Promise<void> | undefined;
    /** @types/node for the consumers: the package may bring it (through a types dependency); else ours. */
    function linkNodeTypes(): Promise<void> {
      typesReady ??= (async () => {
        const types = path.join(app, 'node_modules/@types');
        await fs.mkdir(types, { recursive: true });
        if (!existsSync(path.join(types, 'node'))) {
          await fs.symlink(path.join(ROOT, 'node_modules/@types/node'), path.join(types, 'node'), 'dir');
        }
      })();
      return typesReady;
    }

    /**
     * Type-checks `files` (name → text) with this repository's TypeScript and @types/node under the
     * given module options, and returns the error lines (a missing type dependency shows as the
     * stream methods being absent).
     */
    async function tscErrors(files: Record<string, string>, moduleOptions: string[]): Promise<string[]> {
      await linkNodeTypes();
      for (const [name, text] of Object.entries(files)) await fs.writeFile(path.join(app, name), text);
      const tsc = require.resolve('typescript/bin/tsc', { paths: [ROOT] });
      const flags = ['--noEmit', '--strict', '--skipLibCheck', '--types', 'node', '--target', 'es2022'];
      const args = [tsc, ...flags, ...moduleOptions, ...Object.keys(files)];
      const result = await run(process.execPath, args, app, TIMEOUT);
      return result.stdout.split('\n').filter((line) => /error TS\d+/.test(line));
    }

    let checked: Promise<string[]> | undefined;
    const typeErrors = (): Promise<string[]> =>
      (checked ??= tscErrors(consumers, ['--module', 'nodenext', '--moduleResolution', 'nodenext']));

    it(
      'types: CommonJS and ESM consumers see the classes with their stream API',
      async () => {
        const errors = (await typeErrors()).filter((line) => line.startsWith('types-consumer.'));
        expect(errors).toEqual([]);
      },
      TIMEOUT,
    );

    const node10TypeErrors = (): Promise<string[]> =>
      tscErrors({ 'node10-consumer.ts': node10Consumer }, [
        '--module',
        'commonjs',
        '--moduleResolution',
        'node10',
        '--ignoreDeprecations',
        '6.0',
      ]);

    it(
      'types: a consumer with moduleResolution node10 finds the package and smtp-session-stream/testing',
      async () => {
        expect(await node10TypeErrors()).toEqual([]);
      },
      TIMEOUT,
    );

    it(
      'types: the ESM default import is typed (the .mjs has one)',
      async () => {
        const errors = (await typeErrors()).filter((line) => line.startsWith('types-default.'));
        expect(errors).toEqual([]);
      },
      TIMEOUT,
    );
  });
});
