'use strict';
/**
 * Decoding a verified command: its envelope (headers) and its body, each failure a
 * ContractError with the reason code docs/protocol.md names (and messaging/codec.py uses), so
 * the message is dead-lettered with it. Checked in the same order as the Python SDK.
 *
 * The bodies follow examples/checkout/contracts/checkout.yaml. Unknown fields are ignored;
 * messages never echo a field's value (the address is sensitive), only its name.
 */
const { ContractError, MAX_BODY_BYTES, pythonFloatRepr } = require('./signing');
const { containsPan } = require('./pan');
const { UNDECODABLE } = require('./amqp-tables');

const SCHEMA_VERSION = 1;
const CONTENT_TYPE = 'application/json';
const CREATE = 'checkout.create_shipment.v1';
const CANCEL = 'checkout.cancel_shipment.v1';
const CREATED = 'checkout.shipment_created.v1';
const CANCELLED = 'checkout.shipment_cancelled.v1';
const STEP_FAILED = 'baton.step_failed.v1';
// Every kind of the checkout package and Baton's generic reply: another one of these is
// `no_handler` (known, not ours); anything else `unknown_type`.
const KNOWN_KINDS = new Set([
  'checkout.place_order.v1', 'checkout.reserve_inventory.v1', 'checkout.inventory_reserved.v1',
  'checkout.release_inventory.v1', 'checkout.inventory_released.v1', 'checkout.screen_order.v1',
  'checkout.order_screened.v1', 'checkout.review_order.v1', 'checkout.order_reviewed.v1',
  'checkout.authorize_payment.v1', 'checkout.payment_authorized.v1', 'checkout.void_payment.v1',
  'checkout.payment_voided.v1', 'checkout.capture_payment.v1', 'checkout.payment_captured.v1',
  CREATE, CREATED, CANCEL, CANCELLED,
  'checkout.send_confirmation.v1', 'checkout.confirmation_sent.v1', STEP_FAILED,
]);
const HANDLED = new Set([CREATE, CANCEL]);
const UTF8 = new TextDecoder('utf-8', { fatal: true });
const IDENT = /^[A-Za-z0-9_-]{1,64}$/;
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** A header Baton writes as text (messaging/codec.py `_text`): numbers pass as their text. */
function headerText(headers, name) {
  const value = headers[name];
  if (value === undefined || value === null) return '';
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) {
    try {
      return UTF8.decode(value);
    } catch {
      throw new ContractError('undecodable_header', name);
    }
  }
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  if (typeof value === 'boolean') return value ? 'True' : 'False'; // Python's str(bool)
  if (typeof value === 'object' && (value['!'] === 'float' || value['!'] === 'double')) {
    return Number.isFinite(value.value) ? pythonFloatRepr(value.value) : String(value.value);
  }
  if (typeof value === 'object' && value['!'] === 'long') return String(value.value);
  throw new ContractError('invalid_headers', `${name}: ${Array.isArray(value) ? 'list' : 'table'}, not text`);
}

/** A numeric header's value, or undefined when absent; `null` marks a value that is not a number. */
function headerNumber(headers, name) {
  const value = headers[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'number') return value;
  if (typeof value === 'object' && ['float', 'double', 'long'].includes(value['!'])) return Number(value.value);
  return null;
}

function limit(name, value, max) {
  if (value.length > max) throw new ContractError('invalid_headers', `${name}: at most ${max} characters`);
  return value;
}

/** The envelope of a command (contracts/envelope.py `Envelope`, as messaging/codec.py reads it). */
function envelopeOf(properties) {
  const headers = properties.headers || {};
  const sagaId = headerText(headers, 'x-baton-saga-id') || properties.correlationId || '';
  if (!sagaId) throw new ContractError('missing_header', 'x-baton-saga-id');
  const schema = headerNumber(headers, 'x-baton-schema');
  if (schema !== undefined && schema !== SCHEMA_VERSION) {
    throw new ContractError('unsupported_schema', headerText(headers, 'x-baton-schema'));
  }
  const phase = headerText(headers, 'x-baton-phase') || 'forward';
  if (phase !== 'forward' && phase !== 'compensate') {
    throw new ContractError('invalid_headers', "phase: Input should be 'forward' or 'compensate'");
  }
  const attempt = headerNumber(headers, 'x-baton-attempt') ?? 0;
  if (attempt === null || !Number.isInteger(attempt) || attempt < 0) {
    throw new ContractError('invalid_headers', 'attempt: an integer >= 0');
  }
  const deadline = headerNumber(headers, 'x-baton-deadline');
  if (deadline === null || (deadline !== undefined && !Number.isFinite(deadline))) {
    throw new ContractError('invalid_headers', 'deadline: a number of epoch seconds');
  }
  return {
    kind: limit('kind', properties.type, 200),
    messageId: limit('message_id', properties.messageId || '', 200),
    sagaId: limit('saga_id', sagaId, 200),
    saga: limit('saga', headerText(headers, 'x-baton-saga'), 200),
    step: limit('step', headerText(headers, 'x-baton-step'), 200),
    phase,
    effectId: limit('effect_id', headerText(headers, 'x-baton-effect-id'), 200),
    compensates: limit('compensates', headerText(headers, 'x-baton-compensates'), 200),
    attempt,
    deadline,
    traceparent: limit('traceparent', headerText(headers, 'traceparent'), 55),
  };
}

function field(errors, body, name, check) {
  if (!Object.hasOwn(body, name)) {
    errors.push(`${name}: Field required`);
    return;
  }
  const problem = check(body[name]);
  if (problem) errors.push(`${name}: ${problem}`);
}

const identifier = (value) =>
  typeof value !== 'string' ? 'Input should be a valid string' : IDENT.test(value) ? '' : 'String should match pattern';
const quantity = (value) =>
  typeof value !== 'number' || !Number.isInteger(value)
    ? 'Input should be a valid integer'
    : value < 1 || value > 1000 ? 'Input should be between 1 and 1000' : '';
const address = (value) =>
  typeof value !== 'string'
    ? 'Input should be a valid string'
    : value.length > 300
      ? 'String should have at most 300 characters'
      : containsPan(value) ? 'contains a card number (12-19 digits passing Luhn): never send one' : '';

/** The body of a command this participant handles; ContractError `not_json` / `invalid_body`. */
function bodyOf(kind, raw) {
  let body;
  try {
    body = JSON.parse(UTF8.decode(raw));
  } catch {
    throw new ContractError('not_json', '<root>: Invalid JSON');
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new ContractError('invalid_body', '<root>: Input should be an object');
  }
  const errors = [];
  if (kind === CREATE) {
    field(errors, body, 'order_id', identifier);
    field(errors, body, 'sku', identifier);
    field(errors, body, 'quantity', quantity);
    field(errors, body, 'address', address);
  }
  if (errors.length) throw new ContractError('invalid_body', errors.slice(0, 5).join('; '));
  if (kind === CREATE) {
    return { order_id: body.order_id, sku: body.sku, quantity: body.quantity, address: body.address };
  }
  return {};
}

/**
 * A verified command as this participant handles it, or ContractError (docs/protocol.md
 * "What a participant does", step 1): undecodable, wrong content type, unknown type, bad
 * headers or body, a kind it does not handle, no effect id, a compensation without the id
 * it compensates.
 */
function decodeCommand(properties, content, participant) {
  const headers = properties.headers || {};
  if (headers[UNDECODABLE]) throw new ContractError('undecodable_header', headers[UNDECODABLE]);
  if (content.length > MAX_BODY_BYTES) throw new ContractError('body_too_large', `${content.length} bytes`);
  const contentType = properties.contentType;
  if (contentType && contentType !== CONTENT_TYPE) throw new ContractError('wrong_content_type', contentType);
  if (!properties.type) throw new ContractError('missing_type', 'the AMQP type property names the contract');
  if (!KNOWN_KINDS.has(properties.type)) throw new ContractError('unknown_type', properties.type.slice(0, 200));
  const envelope = envelopeOf(properties);
  const body = HANDLED.has(envelope.kind) ? bodyOf(envelope.kind, content) : null;
  if (!HANDLED.has(envelope.kind)) {
    throw new ContractError('no_handler', `${participant} does not handle ${envelope.kind}`);
  }
  if (!envelope.effectId) throw new ContractError('missing_effect_id', 'x-baton-effect-id');
  if (envelope.phase === 'compensate' && !envelope.compensates) {
    throw new ContractError('missing_compensates', 'x-baton-compensates');
  }
  return { envelope, body };
}

module.exports = {
  CANCEL, CANCELLED, CREATE, CREATED, STEP_FAILED, TRACEPARENT,
  bodyOf, decodeCommand, envelopeOf,
};
