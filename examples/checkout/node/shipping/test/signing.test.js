'use strict';
// `node --test test/`: the protocol's signature test vector, float rendering, typed header
// decoding and body validation, without RabbitMQ or Redis.
require('../lib/amqp-tables').install();

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const path = require('node:path');
const { Keyring, ContractError, privateKeyFrom, publicKeyFrom, publicText, pythonFloatRepr, render } = require('../lib/signing');
const { decodeFields } = require('../lib/amqp-tables');
const { decodeCommand } = require('../lib/contracts');
const { containsPan, maskPans } = require('../lib/pan');
const { Sealer } = require('../lib/dead-letters');
const { childSpan } = require('../lib/worker');

const codec = require(path.join(path.dirname(require.resolve('amqplib')), 'lib', 'codec.js'));

// docs/protocol.md "Test vector"
const SEED = 'nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=';
const PUBLIC = '11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=';
const SIGNATURE = '68q99UMN4tLOT9GkcSzoESFIm_SAGpZr0OLSBl5cKDTiVJIlDk3Lltrd6FJhSLPyaKeKxI1wtMbgW8DYM7vBAw';
const BODY = Buffer.from('{"account_id":"acct-1","amount":{"minor":1250,"currency":"EUR"}}');

function vectorCommand() {
  return {
    type: 'payments.authorize_payment.v1',
    messageId: '3f2a9c0e5b7d41e8a6c1d2e3f4a5b6c7.1',
    correlationId: 'payment-1b2c',
    headers: {
      'x-baton-saga-id': 'payment-1b2c',
      'x-baton-saga': 'payment',
      'x-baton-step': 'authorize_payment',
      'x-baton-phase': 'forward',
      'x-baton-effect-id': '3f2a9c0e5b7d41e8a6c1d2e3f4a5b6c7',
      'x-baton-attempt': 1,
      'x-baton-schema': 1,
      'x-baton-deadline': { '!': 'float', value: 1712345728 },
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    },
  };
}

function vectorKeyring() {
  const own = privateKeyFrom(SEED);
  const trusted = new Map([['orchestrator', new Map([['test-1', publicKeyFrom(PUBLIC)]])]]);
  return new Keyring('orchestrator', trusted, 'test-1', own);
}

/** Encode headers with amqplib's own encoder, decode them with ours: what a consumer receives. */
function overTheWire(headers) {
  const buffer = Buffer.alloc(65536);
  const size = codec.encodeTable(buffer, headers, 0);
  return decodeFields(buffer.subarray(4, size));
}

test('the test vector key pair', () => {
  assert.equal(publicText(crypto.createPublicKey(privateKeyFrom(SEED))), PUBLIC);
});

test('the test vector signature is reproduced and verifies', () => {
  const keyring = vectorKeyring();
  const signed = keyring.sign(vectorCommand(), BODY);
  assert.equal(signed.headers['x-baton-signature'], SIGNATURE);
  assert.equal(signed.headers['x-baton-signer'], 'orchestrator');
  assert.equal(keyring.verifyCommand(signed, BODY), 'orchestrator');
});

test('the vector verifies after a trip through the AMQP table codec (deadline as float)', () => {
  const signed = vectorKeyring().sign(vectorCommand(), BODY);
  const received = { ...signed, headers: overTheWire(signed.headers) };
  assert.deepEqual(received.headers['x-baton-deadline'], { '!': 'float', value: 1712345728 });
  assert.equal(received.headers['x-baton-attempt'], 1);
  assert.equal(vectorKeyring().verify(received, BODY), 'orchestrator');
});

test('refusals: unsigned, unknown key, bad signature, wrong sender, an unrenderable value', () => {
  const keyring = vectorKeyring();
  const signed = keyring.sign(vectorCommand(), BODY);
  const reason = (props, body = BODY) => {
    try {
      keyring.verifyCommand(props, body);
      return 'accepted';
    } catch (err) {
      assert.ok(err instanceof ContractError);
      return err.reason;
    }
  };
  const without = { ...signed.headers };
  delete without['x-baton-signature'];
  assert.equal(reason({ ...signed, headers: without }), 'unsigned');
  assert.equal(reason({ ...signed, headers: { ...signed.headers, 'x-baton-key-id': 'other' } }), 'unknown_key');
  assert.equal(reason(signed, Buffer.from('{}')), 'bad_signature');
  assert.equal(reason({ ...signed, headers: { ...signed.headers, 'x-baton-attempt': 2 } }), 'bad_signature');
  assert.equal(reason({ ...signed, headers: { ...signed.headers, 'x-baton-deadline': 1712345728 } }), 'bad_signature');
  assert.equal(reason({ ...signed, headers: { ...signed.headers, 'x-baton-saga': { a: 1 } } }), 'bad_signature');
  assert.equal(reason({ ...signed, headers: { ...signed.headers, 'x-baton-saga': 'a\nb' } }), 'bad_signature');
  assert.equal(reason(signed, Buffer.alloc(262145)), 'body_too_large');
  const participant = new Keyring('shipping', vectorKeyring().trusted, 'test-1', privateKeyFrom(SEED));
  const asShipping = participant.sign(vectorCommand(), BODY);
  const trustsShipping = new Map([...vectorKeyring().trusted, ['shipping', new Map([['test-1', publicKeyFrom(PUBLIC)]])]]);
  const receiver = new Keyring('shipping', trustsShipping, 'test-1', privateKeyFrom(SEED));
  assert.throws(() => receiver.verifyCommand(asShipping, BODY), (err) => err.reason === 'wrong_sender');
});

test("floats render as Python's repr", () => {
  const cases = [
    [1712345728, '1712345728.0'], [1712345678.25, '1712345678.25'], [0.1, '0.1'], [1e16, '1e+16'],
    [1234567890123456, '1234567890123456.0'], [1e-5, '1e-05'], [0.0001, '0.0001'], [1.5e-7, '1.5e-07'],
    [123.456, '123.456'], [1e22, '1e+22'], [5e-324, '5e-324'], [1.7976931348623157e308, '1.7976931348623157e+308'],
    [-2.5, '-2.5'], [0, '0.0'], [-0, '-0.0'], [100, '100.0'], [2 ** 53, '9007199254740992.0'],
  ];
  for (const [value, text] of cases) assert.equal(pythonFloatRepr(value), text, String(value));
  assert.equal(render({ '!': 'float', value: 1712345728 }), '1712345728.0');
  assert.equal(render(7), '7');
  assert.equal(render(true), 'true');
  assert.equal(render(undefined), '');
  assert.throws(() => render({ '!': 'float', value: Number.NaN }));
  assert.throws(() => render(Buffer.from([0xff])));
});

test('header tables keep their types, survive bad bytes and deep nesting', () => {
  const decoded = overTheWire({
    f: { '!': 'float', value: 1.5 }, d: { '!': 'double', value: 2.25 }, i: 70000, b: 3, s: 'text',
    t: true, n: null, x: Buffer.from([0xff, 0xfe]), l: { '!': 'long', value: 2n ** 60n }, a: [1, 'two'],
    nested: { inner: { '!': 'float', value: 3 } },
  });
  assert.deepEqual(decoded.f, { '!': 'float', value: 1.5 });
  assert.deepEqual(decoded.d, { '!': 'double', value: 2.25 });
  assert.equal(decoded.i, 70000);
  assert.equal(decoded.s, 'text');
  assert.equal(decoded.t, true);
  assert.equal(decoded.n, null);
  assert.deepEqual(decoded.x, Buffer.from([0xff, 0xfe]));
  assert.deepEqual(decoded.l, { '!': 'long', value: 2n ** 60n });
  assert.deepEqual(decoded.a, [1, 'two']);
  assert.deepEqual(decoded.nested.inner, { '!': 'float', value: 3 });
  // a long string that is not UTF-8 stays bytes (refused later), never replaced silently
  const raw = Buffer.from([0, 0, 0, 0, 1, 0x6b, 0x53, 0, 0, 0, 1, 0xff]);
  raw.writeUInt32BE(raw.length - 4, 0);
  assert.deepEqual(decodeFields(raw.subarray(4)).k, Buffer.from([0xff]));
  let deep = { leaf: 1 };
  for (let i = 0; i < 40; i += 1) deep = { deeper: deep };
  assert.ok(overTheWire({ deep }).deep); // kept (as bytes below the depth limit), no crash
});

function commandProps(overrides = {}, headers = {}) {
  return {
    type: 'checkout.create_shipment.v1',
    messageId: 'm-1',
    correlationId: 'saga-1',
    contentType: 'application/json',
    ...overrides,
    headers: {
      'x-baton-saga-id': 'saga-1', 'x-baton-saga': 'checkout', 'x-baton-step': 'create_shipment',
      'x-baton-phase': 'forward', 'x-baton-effect-id': 'e1', 'x-baton-attempt': 1, 'x-baton-schema': 1,
      'x-baton-deadline': { '!': 'float', value: 1712345728 },
      ...headers,
    },
  };
}

const GOOD = Buffer.from(JSON.stringify({ order_id: 'o-1', sku: 's-1', quantity: 2, address: '1 Main St', extra: 1 }));

function refusal(props, body = GOOD) {
  try {
    decodeCommand(props, body, 'shipping');
    return 'accepted';
  } catch (err) {
    assert.ok(err instanceof ContractError, String(err));
    return err.reason;
  }
}

test('commands decode, unknown fields ignored', () => {
  const { envelope, body } = decodeCommand(commandProps(), GOOD, 'shipping');
  assert.deepEqual(body, { order_id: 'o-1', sku: 's-1', quantity: 2, address: '1 Main St' });
  assert.equal(envelope.deadline, 1712345728);
  assert.equal(envelope.attempt, 1);
  assert.equal(envelope.phase, 'forward');
});

test('malformed commands are refused with the reason codes of the protocol', () => {
  const body = (value) => Buffer.from(JSON.stringify(value));
  const base = { order_id: 'o-1', sku: 's-1', quantity: 2, address: '1 Main St' };
  assert.equal(refusal(commandProps({ contentType: 'text/plain' })), 'wrong_content_type');
  assert.equal(refusal(commandProps({ type: undefined })), 'missing_type');
  assert.equal(refusal(commandProps({ type: 'payments.refund.v9' })), 'unknown_type');
  assert.equal(refusal(commandProps({ type: 'checkout.reserve_inventory.v1' })), 'no_handler');
  assert.equal(refusal(commandProps({}, { 'x-baton-schema': 2 })), 'unsupported_schema');
  assert.equal(refusal(commandProps({}, { 'x-baton-phase': 'sideways' })), 'invalid_headers');
  assert.equal(refusal(commandProps({}, { 'x-baton-attempt': -1 })), 'invalid_headers');
  assert.equal(refusal(commandProps({}, { 'x-baton-step': 'x'.repeat(201) })), 'invalid_headers');
  assert.equal(refusal(commandProps({}, { 'x-baton-step': Buffer.from([0xff]) })), 'undecodable_header');
  assert.equal(refusal(commandProps({}, { 'x-baton-effect-id': '' })), 'missing_effect_id');
  assert.equal(refusal(commandProps({ type: 'checkout.cancel_shipment.v1' }, { 'x-baton-phase': 'compensate' }), body({})), 'missing_compensates');
  assert.equal(refusal(commandProps(), Buffer.from('{')), 'not_json');
  assert.equal(refusal(commandProps(), Buffer.from([0xff])), 'not_json');
  assert.equal(refusal(commandProps(), body([])), 'invalid_body');
  assert.equal(refusal(commandProps(), body({ ...base, quantity: 1001 })), 'invalid_body');
  assert.equal(refusal(commandProps(), body({ ...base, quantity: 1.5 })), 'invalid_body');
  assert.equal(refusal(commandProps(), body({ ...base, quantity: '2' })), 'invalid_body');
  assert.equal(refusal(commandProps(), body({ ...base, order_id: 'has space' })), 'invalid_body');
  assert.equal(refusal(commandProps(), body({ ...base, address: 'x'.repeat(301) })), 'invalid_body');
  assert.equal(refusal(commandProps(), body({ ...base, address: 'card 4111-1111-1111-1111' })), 'invalid_body');
  const { sku, ...missing } = base;
  assert.equal(refusal(commandProps(), body(missing)), 'invalid_body');
  assert.equal(sku, 's-1');
});

test('card numbers are found as contracts/pan.py finds them', () => {
  assert.ok(containsPan('4111 1111 1111 1111'));
  assert.ok(containsPan('pay 4111-1111-1111-1111 now'));
  assert.ok(!containsPan('4111 1111 1111 1112')); // Luhn fails
  assert.ok(!containsPan('a4111111111111111')); // glued to a letter: an id, not a card
  assert.equal(maskPans('x 4111111111111111 y'), 'x [card number removed] y');
});

test('sealed dead-letter bodies open again, only in their own context', () => {
  const sealer = new Sealer({ k1: crypto.randomBytes(32).toString('base64') }, '');
  const sealed = sealer.seal(Buffer.from('secret body'), 'dead-letter:q');
  assert.match(sealed, /^v1\.k1\.[A-Za-z0-9_-]+$/);
  assert.equal(sealer.open(sealed, 'dead-letter:q').toString(), 'secret body');
  assert.throws(() => sealer.open(sealed, 'dead-letter:other'));
});

test('a reply span is a child of the command span', () => {
  const parent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
  const child = childSpan(parent);
  assert.match(child, /^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/);
  assert.notEqual(child, parent);
  assert.equal(childSpan('garbage'), '');
  assert.equal(childSpan(''), '');
});
