'use strict';
/**
 * Dead letters (docs/protocol.md "Dead letters"): a command that can never be handled is
 * copied to `<ns>baton.dead.cmd.shipping` with `x-baton-reason` and `x-baton-source-queue`,
 * its body sealed when this process holds sealing keys, and acked only once the broker
 * confirmed the copy. A mark per copied message keeps a redelivery from being copied twice.
 *
 * The marks are Baton's own (messaging/dead_marks.py): `<ns>baton:dead-letter:<digest>`,
 * digest = sha256("<source queue>\n<identity>")[:32] hex, identity
 * `id:<message id>:<sha256(body)[:16] hex>`, kept a day. The same key means `baton dlq replay`
 * clears the mark of what it republishes. A message without a message id is not marked (its
 * identity in Python hashes the headers as Python renders them): it may be copied twice
 * after a lost ack, never lost.
 */
const crypto = require('node:crypto');
const { maskPans } = require('./pan');

const MARK_TTL_S = 24 * 3600;
const NONCE_BYTES = 12;
const KEY_ID = /^[A-Za-z0-9_-]{1,32}$/;

/** AES-256-GCM sealing of whole bodies, `v1.<key id>.<base64url(nonce | ciphertext | tag)>` (messaging/sealing.py). */
class Sealer {
  constructor(keys, active) {
    this.keys = new Map();
    for (const [keyId, text] of Object.entries(keys)) {
      if (!KEY_ID.test(keyId)) throw new Error(`BATON_SEALING__KEYS: key id ${JSON.stringify(keyId)} is not ${KEY_ID.source}`);
      const raw = typeof text === 'string' && /^[A-Za-z0-9+/_-]*={0,2}$/.test(text) ? Buffer.from(text, 'base64') : null;
      if (!raw || raw.length !== 32) throw new Error(`BATON_SEALING__KEYS: key ${JSON.stringify(keyId)} is not base64 of 32 bytes`);
      this.keys.set(keyId, raw);
    }
    if (!active && this.keys.size > 1) throw new Error(`BATON_SEALING__ACTIVE must name one of ${[...this.keys.keys()].sort()}`);
    this.active = active || [...this.keys.keys()][0];
    if (!this.keys.has(this.active)) throw new Error(`BATON_SEALING__ACTIVE: ${JSON.stringify(this.active)} is not in BATON_SEALING__KEYS`);
  }

  seal(plaintext, context) {
    const nonce = crypto.randomBytes(NONCE_BYTES);
    const cipher = crypto.createCipheriv('aes-256-gcm', this.keys.get(this.active), nonce);
    cipher.setAAD(Buffer.from(context, 'utf8'));
    const sealed = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
    return `v1.${this.active}.${Buffer.concat([nonce, sealed]).toString('base64url')}`;
  }

  open(value, context) {
    const [version, keyId, data] = value.split('.');
    if (version !== 'v1' || !this.keys.has(keyId)) throw new Error('not a value sealed with a known key');
    const raw = Buffer.from(data, 'base64url');
    const decipher = crypto.createDecipheriv('aes-256-gcm', this.keys.get(keyId), raw.subarray(0, NONCE_BYTES));
    decipher.setAAD(Buffer.from(context, 'utf8'));
    decipher.setAuthTag(raw.subarray(raw.length - 16));
    return Buffer.concat([decipher.update(raw.subarray(NONCE_BYTES, raw.length - 16)), decipher.final()]);
  }
}

const sha256 = (data) => crypto.createHash('sha256').update(data).digest('hex');

/** Which messages were already copied (Redis, Baton's key shape). */
class DeadLetterMarks {
  constructor(redis, namespace, { ttlS = MARK_TTL_S } = {}) {
    this.redis = redis;
    this.namespace = namespace;
    this.ttlS = ttlS;
  }

  /** The mark's key, or null for a message without a message id (never marked). */
  key(queue, messageId, body) {
    if (!messageId) return null;
    const identity = `id:${messageId}:${sha256(body).slice(0, 16)}`;
    return `${this.namespace}baton:dead-letter:${sha256(`${queue}\n${identity}`).slice(0, 32)}`;
  }

  async copied(queue, messageId, body) {
    const key = this.key(queue, messageId, body);
    return key !== null && (await this.redis.exists(key)) === 1;
  }

  async remember(queue, messageId, body) {
    const key = this.key(queue, messageId, body);
    if (key !== null) await this.redis.set(key, '1', 'EX', this.ttlS, 'NX');
  }
}

/** The reason header: masked card numbers, at most 500 characters. */
function reasonText(reason) {
  return maskPans(reason).slice(0, 500);
}

/** The copy's properties and body: every property Baton carries and every header, plus the reason. */
function copyOf(message, queue, reason, sealer) {
  const p = message.properties;
  const headers = { ...(p.headers || {}), 'x-baton-reason': reasonText(reason), 'x-baton-source-queue': queue };
  let body = message.content;
  if (sealer) {
    body = Buffer.from(sealer.seal(message.content, `dead-letter:${queue}`), 'utf8');
    headers['x-baton-sealed'] = sealer.active;
  }
  const properties = {
    persistent: true,
    headers,
    type: p.type,
    messageId: p.messageId,
    correlationId: p.correlationId,
    contentType: p.contentType,
    replyTo: p.replyTo,
  };
  for (const name of Object.keys(properties)) if (properties[name] === undefined) delete properties[name];
  return { properties, body };
}

module.exports = { DeadLetterMarks, Sealer, copyOf, reasonText };
