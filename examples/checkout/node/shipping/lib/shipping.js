'use strict';
/**
 * The shipping service itself: book a shipment, cancel it. Idempotent by effect id.
 *
 * One hash per create_shipment effect, `<ns>checkout:shipment:{<forward effect id>}`, the
 * layout examples/checkout/README.md agrees on (its invariants read `status` and `saga_id`):
 *
 *   status        created | cancelled
 *   shipment_id   the id replied (absent when the cancellation came first)
 *   effect_id     the forward effect id
 *   saga_id       x-baton-saga-id
 *   order_id      the order (absent when the cancellation came first)
 *   cancelled_by  the effect id of the cancellation that cancelled it, so a re-run of that
 *                 cancellation (a crash before its outcome was recorded) answers the same
 *
 * A cancellation keys the hash by its `x-baton-compensates` (the cancel body is empty), and
 * when it finds none it writes `status: cancelled` itself: a late create_shipment of that
 * effect is then refused (`cancelled`) even without the inbox's tombstone. The address is
 * not stored (sensitive, and not needed once booked in this example).
 */
const crypto = require('node:crypto');
const { StepRejected, redisCall } = require('./errors');
const { CANCEL, CANCELLED, CREATE, CREATED } = require('./contracts');

// KEYS: the shipment hash.  ARGV: shipment id, effect id, saga id, order id
const CREATE_SCRIPT = `
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'created' then return {'created', redis.call('HGET', KEYS[1], 'shipment_id')} end
if status then return {status, ''} end
redis.call('HSET', KEYS[1], 'status', 'created', 'shipment_id', ARGV[1], 'effect_id', ARGV[2],
  'saga_id', ARGV[3], 'order_id', ARGV[4])
return {'created', ARGV[1]}
`;

// KEYS: the shipment hash.  ARGV: forward effect id, saga id, this cancellation's effect id
// Returns 1 when this cancellation cancelled a booked shipment (now or in an earlier run).
const CANCEL_SCRIPT = `
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'created' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'cancelled_by', ARGV[3])
  return 1
end
if status then
  if redis.call('HGET', KEYS[1], 'cancelled_by') == ARGV[3]
     and redis.call('HEXISTS', KEYS[1], 'shipment_id') == 1 then return 1 end
  return 0
end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'effect_id', ARGV[1], 'saga_id', ARGV[2],
  'cancelled_by', ARGV[3])
return 0
`;

class Shipping {
  constructor(redis, namespace) {
    this.redis = redis;
    this.namespace = namespace;
    redis.defineCommand('shippingCreate', { numberOfKeys: 1, lua: CREATE_SCRIPT });
    redis.defineCommand('shippingCancel', { numberOfKeys: 1, lua: CANCEL_SCRIPT });
  }

  shipmentKey(forwardEffectId) {
    return `${this.namespace}checkout:shipment:{${forwardEffectId}}`;
  }

  /** The shipment id of a create_shipment effect: derived, so a re-run books the same one. */
  static shipmentId(effectId) {
    return `shp_${crypto.createHash('sha256').update(effectId).digest('hex').slice(0, 24)}`;
  }

  /** The kinds handled, and the handler of each: `(body, envelope) -> {kind, body}`. */
  get handlers() {
    return new Map([
      [CREATE, (body, envelope) => this.create(body, envelope)],
      [CANCEL, (body, envelope) => this.cancel(body, envelope)],
    ]);
  }

  async create(body, envelope) {
    const shipmentId = Shipping.shipmentId(envelope.effectId);
    const [status, id] = await redisCall(() =>
      this.redis.shippingCreate(this.shipmentKey(envelope.effectId), shipmentId, envelope.effectId,
        envelope.sagaId, body.order_id),
    );
    if (status !== 'created') throw new StepRejected('cancelled', 'the shipment was cancelled before it was booked');
    return { kind: CREATED, body: { shipment_id: id } };
  }

  /** Succeeds when there is nothing to cancel (the create never ran, or was refused). */
  async cancel(_body, envelope) {
    const forward = envelope.compensates;
    if (!forward) return { kind: CANCELLED, body: { cancelled: false } }; // nothing named to undo
    const cancelled = await redisCall(() =>
      this.redis.shippingCancel(this.shipmentKey(forward), forward, envelope.sagaId, envelope.effectId),
    );
    return { kind: CANCELLED, body: { cancelled: cancelled === 1 } };
  }
}

module.exports = { Shipping };
