'use strict';
/**
 * Ed25519 signatures on every message (docs/protocol.md "Signatures").
 *
 * The signed bytes are `baton-signature-v1\n` + the canonical line + `\n` + the body, the
 * canonical line being one `name=value` per SIGNED field, sorted by name. Values are
 * rendered from what travels, exactly as Baton's Python side does (messaging/signing.py):
 * a float as Python's `repr` of the decoded binary64, which is why header tables are decoded
 * with their types (lib/amqp-tables.js). Node's own crypto does Ed25519 (RFC 8032, pure).
 */
const crypto = require('node:crypto');

const PREFIX = Buffer.from('baton-signature-v1\n');
const ORCHESTRATOR = 'orchestrator'; // the only signer commands are taken from
const MAX_BODY_BYTES = 256 * 1024;
const PROPERTIES = ['correlation_id', 'message_id', 'reply_to', 'type'];
const HEADERS = [
  'x-baton-saga-id', 'x-baton-saga', 'x-baton-step', 'x-baton-phase', 'x-baton-effect-id',
  'x-baton-compensates', 'x-baton-attempt', 'x-baton-deadline', 'x-baton-schema',
  'x-baton-sent-at', 'x-baton-signer', 'x-baton-key-id',
];
const SIGNED = [...PROPERTIES, ...HEADERS].sort(); // ASCII names: code-unit order is byte order
const H_SIGNER = 'x-baton-signer';
const H_KEY_ID = 'x-baton-key-id';
const H_SIGNATURE = 'x-baton-signature';
// DER wrappers around a raw Ed25519 seed (PKCS#8) and a raw public key (SPKI).
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** A refusal with a reason code (dead-lettered as `reason: detail`). */
class ContractError extends Error {
  constructor(reason, detail = '') {
    super(detail ? `${reason}: ${detail}` : reason);
    this.reason = reason;
    this.detail = detail;
  }
}

/**
 * Python's `repr` of a finite binary64: the shortest round-tripping digits, positional for
 * decimal exponents -4..15 (always with a digit after the point), else `1e+16` style.
 */
function pythonFloatRepr(x) {
  if (!Number.isFinite(x)) throw new RangeError('no repr for a non-finite float here');
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const sign = x < 0 ? '-' : '';
  const [mantissa, exp] = Math.abs(x).toExponential().split('e'); // shortest round trip
  const digits = mantissa.replace('.', '');
  const e = Number(exp);
  if (e >= -4 && e < 16) {
    if (e < 0) return `${sign}0.${'0'.repeat(-e - 1)}${digits}`;
    const whole = digits.slice(0, e + 1).padEnd(e + 1, '0');
    const fraction = digits.slice(e + 1) || '0';
    return `${sign}${whole}.${fraction}`;
  }
  const rest = digits.slice(1);
  const expText = `${e < 0 ? '-' : '+'}${String(Math.abs(e)).padStart(2, '0')}`;
  return `${sign}${digits[0]}${rest ? `.${rest}` : ''}e${expText}`;
}

/** One value of the canonical line; throws (no rendering: `bad_signature`) when it has none. */
function render(value) {
  let text;
  if (value === undefined || value === null) text = '';
  else if (typeof value === 'string') text = value;
  else if (Buffer.isBuffer(value)) text = UTF8.decode(value); // throws on bytes that are not UTF-8
  else if (typeof value === 'boolean') text = value ? 'true' : 'false';
  else if (typeof value === 'bigint') text = value.toString();
  else if (typeof value === 'number') text = Number.isInteger(value) ? String(value) : pythonFloatRepr(value);
  else if (typeof value === 'object' && (value['!'] === 'float' || value['!'] === 'double')) {
    text = pythonFloatRepr(value.value);
  } else if (typeof value === 'object' && value['!'] === 'long') text = String(value.value);
  else throw new TypeError(`no canonical form for a ${typeof value} value`);
  if (text.includes('\n')) throw new TypeError('a line feed in a signed value');
  return text;
}

/** The value of a signed field of a message: `properties` as amqplib names them. */
function fieldOf(properties, name) {
  switch (name) {
    case 'correlation_id':
      return properties.correlationId;
    case 'message_id':
      return properties.messageId;
    case 'reply_to':
      return properties.replyTo;
    case 'type':
      return properties.type;
    default:
      return (properties.headers || {})[name];
  }
}

/** Exactly what the signature covers. */
function signedBytes(properties, body) {
  const line = SIGNED.map((name) => `${name}=${render(fieldOf(properties, name))}`).join('\n');
  return Buffer.concat([PREFIX, Buffer.from(line, 'utf8'), Buffer.from('\n'), body]);
}

/** Standard or URL-safe base64, padded or not (like messaging/signing.py); throws otherwise. */
function b64decode(text) {
  const clean = String(text).trim().replace(/-/g, '+').replace(/_/g, '/');
  const padded = clean + '='.repeat((4 - (clean.length % 4)) % 4);
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(padded) || padded.length % 4 === 1) {
    throw new TypeError('not base64');
  }
  return Buffer.from(padded, 'base64');
}

function b64url(bytes) {
  return Buffer.from(bytes).toString('base64url'); // RFC 4648 §5, no padding
}

function privateKeyFrom(text) {
  const seed = b64decode(text);
  if (seed.length !== 32) throw new TypeError('not a 32-byte seed');
  return crypto.createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
}

function publicKeyFrom(text) {
  const raw = b64decode(text);
  if (raw.length !== 32) throw new TypeError('not a 32-byte public key');
  return crypto.createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
}

function publicText(key) {
  return key.export({ format: 'der', type: 'spki' }).subarray(SPKI_PREFIX.length).toString('base64');
}

/** A signature header as text; anything unrenderable counts as absent. */
function headerText(value) {
  try {
    return render(value);
  } catch {
    return '';
  }
}

/** This process's signing key and the public keys it trusts, by signer and key id. */
class Keyring {
  /**
   * @param {string} signer  this process's signer name (`x-baton-signer` of its replies)
   * @param {Map<string, Map<string, crypto.KeyObject>>} trusted
   */
  constructor(signer, trusted, keyId, privateKey) {
    this.signer = signer;
    this.keyId = keyId;
    this.trusted = trusted;
    this.privateKey = privateKey;
  }

  /** From settings as `BATON_SIGNING__*` gives them; the errors name the variable, never a key. */
  static fromSettings({ signer, keyId, privateKey, publicKeys }) {
    const VAR = 'BATON_SIGNING__';
    if (!privateKey) {
      throw new Error(`${signer} has no signing key: set ${VAR}PRIVATE_KEY and ${VAR}KEY_ID (or ${VAR}FILE)`);
    }
    if (!keyId) throw new Error(`a signing key needs its key id: set ${VAR}KEY_ID`);
    let own;
    try {
      own = privateKeyFrom(privateKey);
    } catch {
      throw new Error(`${VAR}PRIVATE_KEY is not base64 of a 32-byte Ed25519 seed`);
    }
    const trusted = new Map();
    for (const [name, keys] of Object.entries(publicKeys || {})) {
      for (const [id, text] of Object.entries(keys || {})) {
        try {
          if (!trusted.has(name)) trusted.set(name, new Map());
          trusted.get(name).set(id, publicKeyFrom(text));
        } catch {
          throw new Error(`${VAR}PUBLIC_KEYS: the key ${name}/${id} is not base64 of 32 bytes`);
        }
      }
    }
    const listed = trusted.get(signer)?.get(keyId);
    if (listed && publicText(listed) !== publicText(crypto.createPublicKey(own))) {
      throw new Error(`${VAR}PRIVATE_KEY does not match the public key listed for ${signer}/${keyId}`);
    }
    if (!trusted.get(ORCHESTRATOR)?.size) {
      throw new Error(`${signer} trusts no key of ${ORCHESTRATOR}: add it to ${VAR}PUBLIC_KEYS`);
    }
    return new Keyring(signer, trusted, keyId, own);
  }

  /** `headers` with signer, key id and signature set for `properties` + `body`. */
  sign(properties, body) {
    const headers = { ...(properties.headers || {}), [H_SIGNER]: this.signer, [H_KEY_ID]: this.keyId };
    delete headers[H_SIGNATURE];
    const data = signedBytes({ ...properties, headers }, body);
    headers[H_SIGNATURE] = b64url(crypto.sign(null, data, this.privateKey));
    return { ...properties, headers };
  }

  /** The signer of a message; ContractError `unsigned`, `unknown_key`, `body_too_large`, `bad_signature`. */
  verify(properties, body) {
    const headers = properties.headers || {};
    const signer = headerText(headers[H_SIGNER]);
    const keyId = headerText(headers[H_KEY_ID]);
    const signature = headerText(headers[H_SIGNATURE]);
    if (!(signer && keyId && signature)) {
      throw new ContractError('unsigned', 'no x-baton-signer, x-baton-key-id or signature');
    }
    const key = this.trusted.get(signer)?.get(keyId);
    if (!key) throw new ContractError('unknown_key', `${signer.slice(0, 64)}/${keyId.slice(0, 64)}`);
    if (body.length > MAX_BODY_BYTES) throw new ContractError('body_too_large', `${body.length} bytes`);
    let good = false;
    try {
      good = crypto.verify(null, signedBytes(properties, body), key, b64decode(signature));
    } catch {
      good = false; // a value without rendering, a signature that is not base64
    }
    if (!good) throw new ContractError('bad_signature', `${signer}/${keyId}`);
    return signer;
  }

  /** `verify`, and ContractError `wrong_sender` unless the orchestrator signed it. */
  verifyCommand(properties, body) {
    const signer = this.verify(properties, body);
    if (signer !== ORCHESTRATOR) throw new ContractError('wrong_sender', `${signer} may not send commands`);
    return signer;
  }
}

module.exports = {
  ContractError,
  Keyring,
  MAX_BODY_BYTES,
  ORCHESTRATOR,
  SIGNED,
  b64decode,
  privateKeyFrom,
  publicKeyFrom,
  publicText,
  pythonFloatRepr,
  render,
  signedBytes,
};
