// Drives the official npm client `counterapi@3.1.0` against a Tally server.
//
// Env: TALLY_BASE_URL (e.g. http://127.0.0.1:PORT/v2), TALLY_WORKSPACE, TALLY_COUNTER,
//      optional TALLY_TOKEN, optional TALLY_EXPECT_ERROR ("1" or an op name: get/up/...),
//      optional TALLY_RESET_FORBIDDEN=1 (the caller may not reset, e.g. no Write token).
// Normal run: up, up, down, get, stats, reset, get on a fresh counter (up=0, down=0),
// checking each result against the client's TypeScript types and the expected counts.
// With TALLY_RESET_FORBIDDEN=1 the reset step must throw an HTTP error instead (checked
// like an error run) and the last get still sees up=2, down=1.
// Error run: one call that must fail; reports the fields of what the client threw.
// Prints ONE line of JSON {"ok", "steps": [{op, ok, url, result | error, problems}]};
// exits 0 iff ok. Must be run from a directory whose node_modules holds counterapi.
import { Counter } from 'counterapi';

const env = process.env;
const DEADLINE_MS = Number(env.TALLY_CLIENT_DEADLINE_MS || 20000);
const steps = [];

function finish(report, exitCode) {
  process.stdout.write(JSON.stringify(report) + '\n', () => process.exit(exitCode));
}

setTimeout(
  () => finish({ ok: false, error: `global timeout after ${DEADLINE_MS} ms`, steps }, 124),
  DEADLINE_MS,
);

// ---- checks: each returns a list of problem strings --------------------------------------

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
const isObj = (v) => typeof v === 'object' && v !== null && !Array.isArray(v);

function typed(obj, where, fields) {
  const problems = [];
  for (const [key, kind] of Object.entries(fields)) {
    const v = obj[key];
    const optional = kind.endsWith('?');
    const k = optional ? kind.slice(0, -1) : kind;
    if (v === undefined && optional) continue;
    if (k === 'int' && !Number.isInteger(v)) problems.push(`${where}.${key} not an integer: ${JSON.stringify(v)}`);
    if (k === 'string' && typeof v !== 'string') problems.push(`${where}.${key} not a string: ${JSON.stringify(v)}`);
    if (k === 'time' && !(typeof v === 'string' && RFC3339.test(v) && !Number.isNaN(Date.parse(v)))) {
      problems.push(`${where}.${key} not an RFC 3339 timestamp: ${JSON.stringify(v)}`);
    }
  }
  return problems;
}

function envelope(res) {
  if (!isObj(res)) return [`response is not an object: ${JSON.stringify(res)}`];
  const problems = [];
  if (res.code !== '200') problems.push(`code is ${JSON.stringify(res.code)}, want the string "200"`);
  if (res.message !== undefined && typeof res.message !== 'string') problems.push('message is not a string');
  if (!isObj(res.data)) problems.push('data is not an object');
  return problems;
}

function counts(data, up, down, where = 'data') {
  const problems = [];
  if (data.up_count !== up) problems.push(`${where}.up_count is ${JSON.stringify(data.up_count)}, want ${up}`);
  if (data.down_count !== down) problems.push(`${where}.down_count is ${JSON.stringify(data.down_count)}, want ${down}`);
  return problems;
}

// CounterResponse (get/up/down/reset). up_count/down_count are optional on reset only.
function checkCounter(res, up, down, { isReset = false } = {}) {
  const problems = envelope(res);
  if (problems.length) return problems;
  const d = res.data;
  const c = isReset ? 'int?' : 'int';
  problems.push(...typed(d, 'data', {
    id: 'int', name: 'string', slug: 'string', description: 'string', team_id: 'int',
    user_id: 'int', workspace_id: 'int', workspace_slug: 'string', up_count: c, down_count: c,
    created_at: 'time', updated_at: 'time',
  }));
  if (d.name !== env.TALLY_COUNTER) problems.push(`data.name is ${JSON.stringify(d.name)}, want ${JSON.stringify(env.TALLY_COUNTER)}`);
  if (d.workspace_slug !== env.TALLY_WORKSPACE) problems.push(`data.workspace_slug is ${JSON.stringify(d.workspace_slug)}, want ${JSON.stringify(env.TALLY_WORKSPACE)}`);
  if (isReset) {
    if (d.up_count !== undefined || d.down_count !== undefined) problems.push(...counts(d, 0, 0));
  } else {
    problems.push(...counts(d, up, down));
  }
  return problems;
}

const HOURS = Array.from({ length: 24 }, (_, h) => String(h).padStart(2, '0'));
const WEEKDAYS = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'];
const QUARTERS = ['q1', 'q2', 'q3', 'q4'];

function period(p, where) {
  if (!isObj(p)) return [`${where} is not an object`];
  return typed(p, where, { up: 'int', down: 'int' });
}

// One breakdown (hours/weekdays/quarters): exactly these keys, and (the counter being fresh,
// all its events just happened) its buckets must add up to the totals.
function breakdown(obj, where, keys, up, down) {
  if (!isObj(obj)) return [`${where} is not an object`];
  const problems = [];
  const got = Object.keys(obj).sort().join(',');
  if (got !== [...keys].sort().join(',')) problems.push(`${where} keys are [${got}], want [${keys}]`);
  let sumUp = 0;
  let sumDown = 0;
  for (const [k, p] of Object.entries(obj)) {
    problems.push(...period(p, `${where}.${k}`));
    sumUp += p?.up ?? 0;
    sumDown += p?.down ?? 0;
  }
  if (sumUp !== up || sumDown !== down) problems.push(`${where} adds up to ${sumUp}/${sumDown}, want ${up}/${down}`);
  return problems;
}

// CounterStatsResponse.
function checkStats(res, up, down) {
  const problems = envelope(res);
  if (problems.length) return problems;
  const d = res.data;
  problems.push(...typed(d, 'data', {
    id: 'int', counter_id: 'int', up_count: 'int', down_count: 'int',
    created_at: 'time', updated_at: 'time',
  }));
  problems.push(...counts(d, up, down));
  const s = d.stats;
  if (!isObj(s)) return [...problems, 'data.stats is not an object'];
  for (const key of ['today', 'this_week']) {
    problems.push(...period(s[key], `data.stats.${key}`));
    if (isObj(s[key])) {
      if (s[key].up !== up || s[key].down !== down) {
        problems.push(`data.stats.${key} is ${JSON.stringify(s[key])}, want {"up":${up},"down":${down}}`);
      }
    }
  }
  const t = s.temporal;
  if (!isObj(t)) return [...problems, 'data.stats.temporal is not an object'];
  problems.push(...breakdown(t.hours, 'data.stats.temporal.hours', HOURS, up, down));
  problems.push(...breakdown(t.weekdays, 'data.stats.temporal.weekdays', WEEKDAYS, up, down));
  problems.push(...breakdown(t.quarters, 'data.stats.temporal.quarters', QUARTERS, up, down));
  return problems;
}

// What the client throws: a plain object {message, status, code, details} (not an Error)
// for HTTP and network failures; a real Error for argument checks.
function describeError(e) {
  return {
    is_error_instance: e instanceof Error,
    message: e?.message ?? null,
    status: e?.status ?? null,
    code: e?.code ?? null,
    details: e?.details ?? null,
    keys: isObj(e) || e instanceof Error ? Object.keys(e) : [],
  };
}

function checkError(err) {
  const problems = [];
  if (typeof err.message !== 'string' || !err.message) problems.push('error.message is not a non-empty string');
  if (!Number.isInteger(err.status) || err.status < 400) problems.push(`error.status is ${JSON.stringify(err.status)}, want an HTTP error status`);
  if (err.code !== String(err.status)) problems.push(`error.code is ${JSON.stringify(err.code)}, want the status as a string`);
  if (!isObj(err.details) || typeof err.details.message !== 'string') {
    problems.push('error.details (the response body) is not {"code", "message"} JSON');
  }
  return problems;
}

// ---- run ----------------------------------------------------------------------------------

async function main() {
  for (const name of ['TALLY_BASE_URL', 'TALLY_WORKSPACE', 'TALLY_COUNTER']) {
    if (!env[name]) return finish({ ok: false, error: `${name} is not set`, steps }, 2);
  }
  const counter = new Counter({
    workspace: env.TALLY_WORKSPACE,
    accessToken: env.TALLY_TOKEN || undefined,
    timeout: 5000,
  });
  const http = counter.http.client; // the client's axios instance (a private field)
  http.defaults.baseURL = env.TALLY_BASE_URL;
  let lastUrl = null;
  http.interceptors.request.use((config) => {
    lastUrl = http.getUri(config);
    return config;
  });
  const name = env.TALLY_COUNTER;

  if (env.TALLY_EXPECT_ERROR) {
    const op = ['get', 'up', 'down', 'stats', 'reset'].includes(env.TALLY_EXPECT_ERROR)
      ? env.TALLY_EXPECT_ERROR : 'get';
    const step = { op, ok: false, url: null, problems: [] };
    try {
      step.result = await counter[op](name);
      step.problems.push('the call succeeded, want it to throw');
    } catch (e) {
      step.error = describeError(e);
      step.problems.push(...checkError(step.error));
    }
    step.url = lastUrl;
    step.ok = step.problems.length === 0;
    steps.push(step);
  } else {
    const resetForbidden = env.TALLY_RESET_FORBIDDEN === '1';
    const plan = [
      ['up', (r) => checkCounter(r, 1, 0)],
      ['up', (r) => checkCounter(r, 2, 0)],
      ['down', (r) => checkCounter(r, 2, 1)],
      ['get', (r) => checkCounter(r, 2, 1)],
      ['stats', (r) => checkStats(r, 2, 1)],
      resetForbidden
        ? ['reset', null]
        : ['reset', (r) => checkCounter(r, 0, 0, { isReset: true })],
      resetForbidden ? ['get', (r) => checkCounter(r, 2, 1)] : ['get', (r) => checkCounter(r, 0, 0)],
    ];
    for (const [op, check] of plan) {
      const step = { op, ok: false, url: null, problems: [] };
      if (check === null) step.expect_error = true;
      lastUrl = null;
      try {
        step.result = await counter[op](name);
        if (check === null) step.problems.push('the call succeeded, want it to throw');
        else step.problems.push(...check(step.result));
      } catch (e) {
        step.error = describeError(e);
        if (check === null) step.problems.push(...checkError(step.error));
        else step.problems.push(`threw: ${step.error.message}`);
      }
      step.url = lastUrl;
      step.ok = step.problems.length === 0;
      steps.push(step);
    }
  }
  const ok = steps.every((s) => s.ok);
  finish({ ok, steps }, ok ? 0 : 1);
}

main().catch((e) => finish({ ok: false, error: String(e?.stack ?? e), steps }, 1));
