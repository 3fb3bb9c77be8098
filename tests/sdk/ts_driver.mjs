// Driver for the TypeScript SDK (npm `together-ai@0.52.0`), run by `node` with the working
// directory set to the SDK's own install (`.sdk/ts`), where `together-ai` is resolved.
//
// Same JSON-lines protocol as the Python drivers (tests/sdk/python_driver.py): one command per
// line on stdin, one reply per line on stdout. The client is built as user code builds it,
// `new Together()`, which reads TOGETHER_BASE_URL and TOGETHER_API_KEY; a command's "env" sets
// variables while its client is built, "client" may give `timeout` (seconds) and `max_retries`.

import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import readline from 'node:readline';

// The package's ESM entry, chosen the way Node's `import` would (`exports["."].default`), from the
// package found from the working directory: a bare `import` in this file would resolve from the
// file's own folder, not from the SDK's install.
async function importFromCwd(name) {
  const require = createRequire(path.join(process.cwd(), 'index.js'));
  for (let dir = path.dirname(require.resolve(name)); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const manifest = path.join(dir, 'package.json');
    const pkg = existsSync(manifest) ? JSON.parse(readFileSync(manifest, 'utf8')) : {};
    if (pkg.name === name) {
      const entry = pkg.exports?.['.']?.default ?? pkg.module ?? pkg.main;
      return { module: await import(pathToFileURL(path.join(dir, entry)).href), pkg, dir };
    }
  }
  throw new Error(`package ${name} not found from ${process.cwd()}`);
}

const write = process.stdout.write.bind(process.stdout);
console.log = console.error; // whatever the SDK logs goes to stderr, never into the protocol

const { module: sdk, pkg, dir } = await importFromCwd('together-ai');
const Together = sdk.Together ?? sdk.default;
const clients = new Map();

function clientFor(command) {
  const env = command.env ?? {};
  const options = command.client ?? {};
  const key = JSON.stringify([env, options]);
  if (!clients.has(key)) {
    const saved = {};
    for (const [name, value] of Object.entries(env)) {
      saved[name] = process.env[name];
      process.env[name] = value;
    }
    try {
      const settings = {};
      if (options.timeout != null) settings.timeout = options.timeout * 1000;
      if (options.max_retries != null) settings.maxRetries = options.max_retries;
      clients.set(key, new Together(settings));
    } finally {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  }
  return clients.get(key);
}

const ops = {
  async execute(client, command) {
    const body = { code: command.code, language: command.language ?? 'python' };
    if (command.session_id != null) body.session_id = command.session_id;
    if (command.files != null) body.files = command.files;
    return client.codeInterpreter.execute(body);
  },
  async list(client) {
    return client.codeInterpreter.sessions.list();
  },
};

function bases(err) {
  const names = [];
  for (let proto = Object.getPrototypeOf(err); proto; proto = Object.getPrototypeOf(proto)) {
    names.push(proto.constructor.name);
  }
  return names;
}

async function handle(line) {
  let command;
  try {
    command = JSON.parse(line);
  } catch (err) {
    return { ok: false, driver_error: `bad command: ${err.message}` };
  }
  if (command.op === 'hello') {
    return { ok: true, result: { version: pkg.version, location: dir, pid: process.pid } };
  }
  const op = ops[command.op];
  if (!op) return { ok: false, driver_error: `unknown op ${JSON.stringify(command.op)}` };
  try {
    return { ok: true, result: await op(clientFor(command), command) };
  } catch (err) {
    return {
      ok: false,
      error_type: err?.constructor?.name ?? typeof err,
      error_bases: bases(err),
      status: err?.status ?? null,
      code: err?.error?.error?.code ?? null,
      message: String(err?.message ?? err).slice(0, 4000),
      traceback: String(err?.stack ?? '').slice(0, 4000),
    };
  }
}

// One command at a time, in order: the next line is read only after the reply is written.
const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) continue;
  write(JSON.stringify(await handle(line)) + '\n');
}
