'use strict';
/**
 * What becomes of one verified, decoded command (docs/protocol.md "What a participant does",
 * steps 2 to 5), without AMQP: `Responder.answer` returns a verdict the worker carries out:
 *
 *   publish   {reply, outcome}   publish the reply with a confirm, then ack
 *   redeliver {afterS, outcome}  hold the delivery afterS seconds, then nack with requeue
 *   drop      {outcome}          ack without a reply (expired)
 *
 * Outcomes are the labels of the Python SDK's canonical log line (baton_sdk/protocol.py):
 * ok, rejected, error, duplicate, cancelled, expired, retry, busy.
 */
const { performance } = require('node:perf_hooks');
const { StepRejected, TransientError } = require('./errors');
const { STEP_FAILED } = require('./contracts');
const { maskPans } = require('./pan');

const FIRST_POLL_S = 0.05; // a busy subject is polled after 50 ms, doubling ...
const MAX_POLL_S = 1.0; // ... up to once a second
// A handler is stopped this far into a lease it could not renew: the rest is the margin for
// the renewal's round trip and clock drift before Redis could grant the lease to another.
const LEASE_SAFE_SHARE = 0.8;

class LeaseLost extends TransientError {
  constructor(message) {
    super(message);
    this.name = 'LeaseLost';
  }
}

const sleep = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));
const now = () => performance.now() / 1000; // monotonic seconds

const publish = (reply, outcome, error = '') => ({ type: 'publish', reply, outcome, error });
const redeliver = (afterS, outcome, error = '') => ({ type: 'redeliver', afterS, outcome, error });
const drop = (outcome) => ({ type: 'drop', outcome, error: '' });

function stepFailed(reason, retriable, detail = '') {
  const body = { reason: maskPans(reason).slice(0, 200) || 'rejected', retriable, detail: maskPans(detail).slice(0, 2000) };
  return { kind: STEP_FAILED, body };
}

/** The retriable reply to a handler bug: the engine retries the same effect id. */
function internalError(err) {
  const name = (err && err.name) || 'Error';
  return stepFailed('internal_error', true, `${name}: ${err && err.message}`);
}

class Responder {
  /**
   * @param {object} o
   * @param {import('./inbox').RedisInbox} o.inbox
   * @param {Map<string, Function>} o.handlers  kind -> async (body, envelope) -> {kind, body}
   * @param {() => number} [o.clock]  wall-clock epoch seconds, what deadlines are compared with
   */
  constructor({ inbox, handlers, leaseS, redeliverMinS, redeliverMaxS, log, clock = () => Date.now() / 1000 }) {
    this.inbox = inbox;
    this.handlers = handlers;
    this.leaseS = leaseS;
    this.redeliverMinS = redeliverMinS;
    this.redeliverMaxS = redeliverMaxS;
    this.log = log;
    this.clock = clock;
  }

  expired(envelope) {
    return envelope.deadline !== undefined && envelope.deadline <= this.clock();
  }

  /** The verdict for a decoded command. Never throws. */
  async answer(command) {
    const { envelope } = command;
    if (this.expired(envelope)) return this.whenExpired(envelope);
    let claim;
    let sent;
    try {
      ({ claim, sent } = await this.claimWaiting(envelope));
    } catch (err) {
      return this.retry(err);
    }
    if (claim.status === 'outcome') return publish(claim.outcome, 'duplicate'); // final already
    if (claim.status === 'cancelled') return publish(claim.outcome, 'cancelled'); // undone first
    if (claim.status === 'busy') return redeliver(0, 'busy'); // held by another for a whole lease
    const state = { recorded: false };
    try {
      if (this.expired(envelope)) return drop('expired'); // it expired while waiting for the lease
      return await this.run(command, claim, sent, state);
    } catch (err) {
      return this.retry(err); // only the inbox gets here: run judges the handler's errors
    } finally {
      if (!state.recorded) await this.inbox.release(claim).catch(() => {}); // else it expires
    }
  }

  /** Step 2: answer a stored final outcome again; otherwise drop (a newer attempt is queued). */
  async whenExpired(envelope) {
    let stored = null;
    try {
      stored = await this.inbox.stored(envelope.effectId);
    } catch (err) {
      this.log.warning('inbox_unavailable', { error: err });
    }
    return stored ? publish(stored, 'duplicate') : drop('expired');
  }

  /** Claim, polling with backoff while another delivery is busy; give up after ~lease_s. */
  async claimWaiting(envelope) {
    let waited = 0;
    let pause = FIRST_POLL_S;
    for (;;) {
      const sent = now();
      const claim = await this.inbox.claim(envelope.effectId, envelope.compensates, this.leaseS);
      if (claim.status !== 'busy' || waited >= this.leaseS) return { claim, sent };
      const nap = Math.min(pause, Math.max(claim.retryAfterS, 0.001)); // no later than it expires
      await sleep(nap); // waiting for the other delivery, holding ours
      waited += nap;
      pause = Math.min(pause * 2, MAX_POLL_S);
    }
  }

  /**
   * Hold a granted lease while the handler runs: renew it every lease_s/3 and move the
   * handler's deadline along with each renewal that got through. `lost` rejects (LeaseLost,
   * infrastructure) when the lease is lost, or when renewals stopped getting through long
   * enough that Redis could grant it to another delivery.
   */
  hold(claim, sent) {
    let stopped = false;
    let fail;
    const lost = new Promise((_, reject) => {
      fail = reject;
    });
    lost.catch(() => {}); // observed through the race, or not at all
    const safe = this.leaseS * LEASE_SAFE_SHARE;
    let timer = setTimeout(() => fail(new LeaseLost('lease not renewed in time')), (sent + safe - now()) * 1000);
    const beat = setInterval(async () => {
      const at = now();
      try {
        const renewed = await this.inbox.renew(claim, this.leaseS);
        if (stopped) return;
        if (!renewed) {
          this.log.warning('lease_lost', { subject: claim.subject });
          fail(new LeaseLost('lease taken over'));
          return;
        }
        clearTimeout(timer);
        timer = setTimeout(() => fail(new LeaseLost('lease not renewed in time')), (at + safe - now()) * 1000);
      } catch (err) {
        this.log.warning('lease_renew_failed', { subject: claim.subject, error: err }); // next beat may get through
      }
    }, (this.leaseS / 3) * 1000);
    return {
      lost,
      stop() {
        stopped = true;
        clearInterval(beat);
        clearTimeout(timer);
      },
    };
  }

  /** Steps 3 to 5 for a granted claim: run the handler under the lease, record, classify. */
  async run(command, claim, sent, state) {
    const { envelope, body } = command;
    const handler = this.handlers.get(envelope.kind);
    const held = this.hold(claim, sent);
    let reply;
    try {
      const call = Promise.resolve().then(() => handler(body, envelope));
      call.catch(() => {}); // a handler outliving its lease must not raise unobserved
      reply = await Promise.race([call, held.lost]);
    } catch (err) {
      held.stop();
      if (err instanceof StepRejected) {
        const refused = stepFailed(err.reason, false, err.detail);
        const stored = await this.inbox.record(claim, refused);
        state.recorded = true;
        return publish(stored.outcome, stored.ours ? 'rejected' : 'duplicate');
      }
      if (err instanceof TransientError) return this.retry(err);
      this.log.warning('handler_failed', { error: err });
      return publish(internalError(err), 'error', (err && err.name) || 'Error'); // not final
    }
    held.stop();
    const stored = await this.inbox.record(claim, reply, { bury: envelope.phase === 'compensate' });
    state.recorded = true;
    return publish(stored.outcome, stored.ours ? 'ok' : 'duplicate');
  }

  /** Infrastructure trouble: no answer; redeliver after a jittered pause. */
  retry(err) {
    this.log.warning('infrastructure_error', { error: err });
    const pause = this.redeliverMinS + Math.random() * (this.redeliverMaxS - this.redeliverMinS);
    return redeliver(pause, 'retry', (err && err.name) || 'Error');
  }
}

module.exports = { Responder, LeaseLost, internalError, stepFailed, sleep };
