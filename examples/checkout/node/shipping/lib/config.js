'use strict';
/**
 * Settings from the same `BATON_*` variables the Python processes read (messaging/settings.py),
 * so one deployment's environment configures both. Only what this participant uses is read.
 * Errors name the variable and never echo a secret.
 */
const fs = require('node:fs');

const PARTICIPANT = 'shipping';
const NAMESPACE = /^[A-Za-z0-9_.:-]*$/;

function text(env, name, fallback = '') {
  const value = env[name];
  return value === undefined || value === '' ? fallback : value;
}

function number(env, name, fallback, { min = -Infinity, max = Infinity, integer = false, above = false } = {}) {
  const raw = text(env, name);
  if (!raw) return fallback;
  const value = Number(raw);
  const bad =
    !Number.isFinite(value) || (integer && !Number.isInteger(value)) || value > max ||
    (above ? value <= min : value < min);
  if (bad) throw new Error(`${name}=${raw} is not a valid value (${integer ? 'integer ' : ''}${above ? '>' : '>='} ${min})`);
  return value;
}

function json(env, name) {
  const raw = text(env, name);
  if (!raw) return undefined;
  try {
    return JSON.parse(raw);
  } catch {
    throw new Error(`${name} is not JSON`); // its content may be secret: never echoed
  }
}

/** `BATON_SIGNING__*`, a variable that is set winning over `BATON_SIGNING__FILE`. */
function signing(env) {
  const VAR = 'BATON_SIGNING__';
  let file = {};
  const path = text(env, `${VAR}FILE`);
  if (path) {
    try {
      file = JSON.parse(fs.readFileSync(path, 'utf8'));
    } catch (err) {
      throw new Error(`${VAR}FILE ${path}: not a readable signing file (${err.name})`);
    }
  }
  const publicKeys = json(env, `${VAR}PUBLIC_KEYS`) ?? file.public_keys ?? {};
  if (typeof publicKeys !== 'object' || Array.isArray(publicKeys)) {
    throw new Error(`${VAR}PUBLIC_KEYS: expected {"<signer>": {"<key id>": "<base64 public key>"}}`);
  }
  return {
    signer: text(env, `${VAR}SIGNER`, file.signer || PARTICIPANT),
    keyId: text(env, `${VAR}KEY_ID`, file.key_id || ''),
    privateKey: text(env, `${VAR}PRIVATE_KEY`, file.private_key || ''),
    publicKeys,
  };
}

/** `BATON_SEALING__KEYS` (JSON {key id: base64 of 32 bytes}) and `__ACTIVE`; null without keys. */
function sealing(env) {
  const keys = json(env, 'BATON_SEALING__KEYS');
  if (!keys || !Object.keys(keys).length) return null;
  return { keys, active: text(env, 'BATON_SEALING__ACTIVE') };
}

/** Every setting, validated; throws an Error whose message says what to set. */
function load(env = process.env) {
  const namespace = text(env, 'BATON_NAMESPACE');
  if (namespace.length > 100 || !NAMESPACE.test(namespace)) {
    throw new Error('BATON_NAMESPACE may use only letters, digits and - _ . : (at most 100)');
  }
  if (namespace && !namespace.endsWith('.')) throw new Error(`BATON_NAMESPACE must be empty or end in '.'`);
  const redeliverMinS = number(env, 'BATON_PARTICIPANT__REDELIVER_MIN_S', 0.5, { min: 0 });
  const redeliverMaxS = number(env, 'BATON_PARTICIPANT__REDELIVER_MAX_S', 2.0, { min: 0 });
  return {
    participant: PARTICIPANT,
    namespace,
    rabbitUrl: text(env, 'BATON_RABBIT__URL', 'amqp://guest:guest@127.0.0.1:5672/'),
    prefetch: number(env, 'BATON_RABBIT__PREFETCH', 64, { min: 1, max: 10000, integer: true }),
    connectWaitS: number(env, 'BATON_RABBIT__CONNECT_WAIT_S', 300, { min: 0 }),
    poisonAfter: number(env, 'BATON_RABBIT__POISON_AFTER', 5, { min: 1, max: 1000, integer: true }),
    redisUrl: text(env, 'BATON_REDIS__URL', 'redis://127.0.0.1:6379/0'),
    leaseS: number(env, 'BATON_PARTICIPANT__LEASE_S', 10, { min: 0, above: true }),
    inboxTtlS: number(env, 'BATON_PARTICIPANT__INBOX_TTL_S', 30 * 24 * 3600, { min: 1, integer: true }),
    redeliverMinS,
    redeliverMaxS: Math.max(redeliverMinS, redeliverMaxS),
    logLevel: text(env, 'BATON_LOG__LEVEL', 'info'),
    metricsPort: number(env, 'BATON_METRICS__PORT', 0, { min: 0, max: 65535, integer: true }),
    metricsHost: text(env, 'BATON_METRICS__HOST', '127.0.0.1'),
    signing: signing(env),
    sealing: sealing(env),
  };
}

/** The queue and exchange names of docs/protocol.md "Topology" (contracts/topology.py). */
function topology(namespace, participant = PARTICIPANT) {
  const name = (n) => `${namespace}${n}`;
  const commandQueue = name(`baton.cmd.${participant}`);
  return {
    commandQueue,
    deadLetterQueue: name(`baton.dead.cmd.${participant}`),
    repliesExchange: name('baton.replies'),
    repliesQueue: name('baton.replies'),
    deadLetterExchange: name('baton.dlx'),
  };
}

module.exports = { load, topology, PARTICIPANT };
