'use strict';
/**
 * The effect-id inbox on Redis (docs/protocol.md "For implementers in another language"):
 * claim, renew, record, release, each one Lua script, so each step is atomic.
 *
 * The key layout is the Python SDK's (baton_sdk/keys.py), so Baton's Redis ACL pattern
 * `<ns>participant:{shipping}:*` (docs/operations.md) and its tools cover this participant too:
 *
 *   <ns>participant:{shipping}:inbox:<effect id>   the final outcome (JSON {kind, body}), ttl
 *   <ns>participant:{shipping}:tomb:<effect id>    a forward effect whose compensation ran, ttl
 *   <ns>participant:{shipping}:lease:<subject>     the fencing token holding the subject, px
 *   <ns>participant:{shipping}:fence               the last fencing token handed out
 *
 * Every key shares the hash tag `{shipping}`: one Redis Cluster slot per script. Scripts never
 * build key names; they all arrive in KEYS.
 */

// KEYS: outcome of the effect id, lease of the subject, tombstone of the effect id, fence
// ARGV: lease ms, forward flag ("1" or ""), the cancelled outcome, outcome ttl seconds
const CLAIM = `
local stored = redis.call('GET', KEYS[1])
if stored then return {'outcome', stored} end
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4])
  return {'cancelled', ARGV[3]}
end
local left = redis.call('PTTL', KEYS[2])
if left ~= -2 then return {'busy', tostring(left)} end
local token = tostring(redis.call('INCR', KEYS[4]))
redis.call('SET', KEYS[2], token, 'PX', ARGV[1])
return {'granted', token}
`;

// KEYS: outcome of the effect id, lease of the subject, tombstone of the compensated effect
// ARGV: outcome, ttl seconds, fencing token, bury flag ("1" or "")
const RECORD = `
local stored = redis.call('GET', KEYS[1])
if not stored then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  stored = ARGV[1]
end
if ARGV[4] == '1' then redis.call('SET', KEYS[3], '1', 'EX', ARGV[2]) end
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return stored
`;

// KEYS: lease.  ARGV: fencing token, lease ms ("" to release)
const FENCED = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
`;

/** A stored outcome: `{kind, body}` as JSON (the SDK's format). */
function dumps(outcome) {
  return JSON.stringify({ kind: outcome.kind, body: outcome.body });
}

function loads(raw) {
  const data = JSON.parse(raw);
  if (typeof data?.kind !== 'string' || typeof data.body !== 'object') throw new Error('inbox holds a malformed outcome');
  return { kind: data.kind, body: data.body };
}

const CANCELLED_OUTCOME = { kind: 'baton.step_failed.v1', body: { reason: 'cancelled', retriable: false, detail: '' } };

const ms = (seconds) => Math.max(1, Math.round(seconds * 1000));

class RedisInbox {
  constructor(redis, namespace, participant, { ttlS }) {
    for (const part of [namespace, participant]) {
      if (part.includes('{') || part.includes('}')) throw new Error('namespace and participant must not contain braces');
    }
    this.redis = redis;
    this.base = `${namespace}participant:{${participant}}`;
    this.ttlS = ttlS;
    redis.defineCommand('batonInboxClaim', { numberOfKeys: 4, lua: CLAIM });
    redis.defineCommand('batonInboxRecord', { numberOfKeys: 3, lua: RECORD });
    redis.defineCommand('batonInboxFenced', { numberOfKeys: 1, lua: FENCED });
  }

  outcomeKey(effectId) {
    return `${this.base}:inbox:${effectId}`;
  }

  tombstoneKey(effectId) {
    return `${this.base}:tomb:${effectId}`;
  }

  leaseKey(subject) {
    return `${this.base}:lease:${subject}`;
  }

  get fenceKey() {
    return `${this.base}:fence`;
  }

  /**
   * outcome | cancelled | busy | granted, atomically. The lease is on the subject (the
   * compensated id for a compensation); `cancelled` also stores the refusal as final.
   */
  async claim(effectId, compensates, leaseS) {
    const subject = compensates || effectId;
    const [status, value] = await this.redis.batonInboxClaim(
      this.outcomeKey(effectId), this.leaseKey(subject), this.tombstoneKey(effectId), this.fenceKey,
      ms(leaseS), compensates ? '' : '1', dumps(CANCELLED_OUTCOME), this.ttlS,
    );
    const claim = { status, effectId, subject, compensates, outcome: null, token: '', retryAfterS: 0 };
    if (status === 'outcome' || status === 'cancelled') claim.outcome = loads(value);
    else if (status === 'busy') claim.retryAfterS = Math.max(Number(value), 0) / 1000;
    else claim.token = value;
    return claim;
  }

  /** Extend a granted lease; false when the token no longer holds it. */
  async renew(claim, leaseS) {
    return (await this.redis.batonInboxFenced(this.leaseKey(claim.subject), claim.token, ms(leaseS))) === 1;
  }

  /**
   * Store `outcome` unless one is stored (the stored one wins and is returned), tombstone the
   * compensated effect when `bury`, and end the lease if the token still holds it.
   */
  async record(claim, outcome, { bury = false } = {}) {
    const buried = bury && Boolean(claim.compensates);
    const outcomeKey = this.outcomeKey(claim.effectId);
    const tomb = buried ? this.tombstoneKey(claim.compensates) : outcomeKey; // declared, unused
    const ours = dumps(outcome);
    const stored = await this.redis.batonInboxRecord(
      outcomeKey, this.leaseKey(claim.subject), tomb, ours, this.ttlS, claim.token, buried ? '1' : '',
    );
    return { outcome: stored === ours ? outcome : loads(stored), ours: stored === ours };
  }

  async release(claim) {
    await this.redis.batonInboxFenced(this.leaseKey(claim.subject), claim.token, '');
  }

  /** The final outcome stored for `effectId`, if any (a read, no lease). */
  async stored(effectId) {
    const raw = await this.redis.get(this.outcomeKey(effectId));
    return raw === null ? null : loads(raw);
  }
}

module.exports = { RedisInbox, CANCELLED_OUTCOME, dumps, loads };
