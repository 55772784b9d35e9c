'use strict';
/**
 * The broker side of the participant protocol: connect (and reconnect), wait for the
 * topology, consume the command queue with manual acks and a bounded prefetch, and turn each
 * verdict into broker actions. A reply is published with a confirm *before* the command is
 * acked (a failed publish requeues it: its outcome is recorded, so the redelivery answers it
 * again); a dead letter likewise is acked only once its copy was confirmed.
 *
 * This participant never declares anything: `baton declare` does, as the administrative user.
 * It checks its queues passively and, while they are missing, waits and says so.
 */
const crypto = require('node:crypto');
const { performance } = require('node:perf_hooks');
const amqp = require('amqplib');
const { ContractError } = require('./signing');
const { decodeCommand, TRACEPARENT } = require('./contracts');
const { TransientError } = require('./errors');
const { copyOf } = require('./dead-letters');
const { sleep } = require('./protocol');

const CRASH_PAUSE_S = 0.2; // before a command whose handling threw goes back to its queue
const REQUEUE_DELAY_S = 0.5; // before a message that could not be dead-lettered goes back
const CONFIRM_TIMEOUT_S = 30; // a publish not confirmed by then counts as failed
const DECLARE_HINT = 'run `baton declare` with the administrative broker user (or load deploy/rabbitmq/definitions.json)';
const FAILURES_KEPT = 10000;

/** Publish and wait for the broker's confirm; rejects on a nack, a closed channel or a timeout. */
function publishConfirmed(channel, exchange, routingKey, body, properties) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no publisher confirm in time')), CONFIRM_TIMEOUT_S * 1000);
    try {
      channel.publish(exchange, routingKey, body, properties, (err) => {
        clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      });
    } catch (err) {
      clearTimeout(timer);
      reject(err);
    }
  });
}

/** A child span of the command's W3C trace context: same trace, a span of its own. */
function childSpan(traceparent) {
  const match = TRACEPARENT.exec(traceparent || '');
  if (!match || /^0+$/.test(match[1])) return '';
  let span;
  do span = crypto.randomBytes(8).toString('hex');
  while (/^0+$/.test(span));
  return `00-${match[1]}-${span}-${match[3]}`;
}

class Worker {
  constructor({ config, topology, keyring, responder, marks, sealer, log, metrics }) {
    this.config = config;
    this.topology = topology;
    this.keyring = keyring;
    this.responder = responder;
    this.marks = marks;
    this.sealer = sealer;
    this.log = log;
    this.metrics = metrics;
    this.queue = topology.commandQueue;
    this.stopping = false;
    this.ready = false;
    this.inflight = 0;
    this.idleWaiters = [];
    this.settled = new WeakSet(); // deliveries already acked or nacked
    this.failures = new Map(); // message identity -> failures (poison), bounded
    this.stopped = new Promise((resolve) => {
      this.signalStop = resolve;
    });
  }

  /** Stop taking commands, finish the ones in flight, then `run` returns. */
  stop() {
    if (this.stopping) return;
    this.stopping = true;
    this.log.info('worker_stopping', { inflight: this.inflight });
    this.signalStop();
  }

  async pause(seconds) {
    await Promise.race([sleep(seconds), this.stopped]);
  }

  idle() {
    if (!this.inflight) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Connect and consume until stopped; reconnects after any connection loss. */
  async run() {
    const giveUpAt = performance.now() / 1000 + this.config.connectWaitS;
    let connectedOnce = false;
    let delay = 0.5;
    while (!this.stopping) {
      let connection;
      try {
        connection = await amqp.connect(this.config.rabbitUrl, { clientProperties: { product: 'baton-shipping' } });
      } catch (err) {
        if (!connectedOnce && performance.now() / 1000 + delay > giveUpAt) throw err;
        this.log.warning('rabbitmq_unreachable', { error: err, retry_in_s: delay });
        await this.pause(delay);
        delay = Math.min(delay * 2, 5);
        continue;
      }
      connectedOnce = true;
      delay = 0.5;
      connection.on('error', (err) => this.log.warning('rabbitmq_connection_error', { error: err }));
      try {
        await this.session(connection);
        if (!this.stopping) this.log.warning('rabbitmq_connection_lost', { queue: this.queue });
      } catch (err) {
        this.log.warning('rabbitmq_session_failed', { error: err });
        await this.pause(delay);
      } finally {
        this.ready = false;
        await connection.close().catch(() => {});
      }
    }
    this.log.info('worker_stopped', { participant: this.config.participant });
  }

  /** One connection's life: resolves when it closes or the worker stops (in flight done). */
  async session(connection) {
    const closed = new Promise((resolve) => connection.once('close', resolve));
    if (!(await this.waitForTopology(connection, closed))) return;
    const publisher = await connection.createConfirmChannel();
    publisher.on('error', (err) => this.log.warning('publisher_channel_error', { error: err }));
    const consumer = await connection.createChannel();
    consumer.on('error', (err) => this.log.warning('consumer_channel_error', { error: err }));
    const channelClosed = new Promise((resolve) => {
      publisher.once('close', resolve);
      consumer.once('close', resolve);
    });
    await consumer.prefetch(this.config.prefetch);
    await consumer.checkQueue(this.queue); // never creates it
    const { consumerTag } = await consumer.consume(
      this.queue, (message) => this.onMessage(message, consumer, publisher, connection), { noAck: false },
    );
    this.ready = true;
    this.log.info('worker_started', { queue: this.queue, prefetch: this.config.prefetch });
    await Promise.race([closed, channelClosed, this.stopped]);
    this.ready = false;
    if (this.stopping) {
      await consumer.cancel(consumerTag).catch(() => {}); // no new deliveries; in-flight ones can still ack
      await this.idle();
    }
  }

  /** Whether a queue or exchange exists, asked passively on a channel of its own (a 404 closes it). */
  async exists(connection, kind, name) {
    const channel = await connection.createChannel();
    channel.on('error', () => {}); // the 404 is the answer, not an error
    try {
      if (kind === 'queue') await channel.checkQueue(name);
      else await channel.checkExchange(name);
      return true;
    } catch (err) {
      if (err && err.code === 404) return false;
      throw err;
    } finally {
      await channel.close().catch(() => {});
    }
  }

  /** Wait until this participant's queues and exchanges exist; false if stopped (or closed) first. */
  async waitForTopology(connection, closed) {
    const t = this.topology;
    const needs = [
      ['queue', t.commandQueue], ['queue', t.deadLetterQueue], ['queue', t.repliesQueue],
      ['exchange', t.repliesExchange], ['exchange', t.deadLetterExchange],
    ];
    let delay = 2;
    let gone = false;
    closed.then(() => {
      gone = true;
    });
    while (!this.stopping && !gone) {
      const missing = [];
      for (const [kind, name] of needs) {
        if (!(await this.exists(connection, kind, name))) missing.push(`${kind} ${name}`);
      }
      if (!missing.length) return true;
      this.log.warning('topology_missing', { missing, hint: DECLARE_HINT, retry_in_s: delay });
      await Promise.race([this.pause(delay), closed]);
      delay = Math.min(delay * 2, 30);
    }
    return false;
  }

  async onMessage(message, consumer, publisher, connection) {
    if (message === null) { // the broker cancelled our consumer (queue deleted): start over
      this.log.warning('consumer_cancelled', { queue: this.queue });
      await connection.close().catch(() => {});
      return;
    }
    if (this.stopping) { // delivered while we were cancelling: hand it straight back
      this.nack(consumer, message);
      return;
    }
    this.inflight += 1;
    try {
      await this.process(message, consumer, publisher);
    } catch (err) {
      await this.crashed(message, consumer, publisher, err);
    } finally {
      this.inflight -= 1;
      if (!this.inflight) for (const resolve of this.idleWaiters.splice(0)) resolve();
    }
  }

  async process(message, consumer, publisher) {
    const started = performance.now();
    const { properties, content } = message;
    let command;
    try {
      this.keyring.verifyCommand(properties, content); // before reading anything else
      command = decodeCommand(properties, content, this.config.participant);
    } catch (err) {
      if (!(err instanceof ContractError)) throw err;
      const outcome = await this.deadLetter(message, consumer, publisher, err.message);
      this.finish(properties.type, outcome, started, { reason: err.reason, message_id: properties.messageId });
      return;
    }
    const e = command.envelope;
    const context = {
      saga_id: e.sagaId, saga: e.saga, step: e.step, phase: e.phase, attempt: e.attempt,
      effect_id: e.effectId, message_id: e.messageId, trace_id: TRACEPARENT.exec(e.traceparent)?.[1],
    };
    const verdict = await this.responder.answer(command);
    const outcome = await this.act(message, consumer, publisher, e, verdict);
    this.finish(e.kind, outcome, started, { ...context, error: verdict.error });
  }

  /** The one place a verdict becomes a broker action. */
  async act(message, consumer, publisher, envelope, verdict) {
    switch (verdict.type) {
      case 'publish':
        return this.reply(message, consumer, publisher, envelope, verdict);
      case 'redeliver':
        if (verdict.afterS) await sleep(verdict.afterS); // holding the delivery: no hot loop
        this.nack(consumer, message);
        return verdict.outcome;
      case 'drop':
        this.ack(consumer, message);
        return verdict.outcome;
      default:
        throw new TypeError(`no broker action for ${verdict.type}`);
    }
  }

  /** The reply's properties and body: the command's saga position and attempt, signed. */
  replyMessage(envelope, reply) {
    const headers = {
      'x-baton-saga-id': envelope.sagaId,
      'x-baton-saga': envelope.saga,
      'x-baton-step': envelope.step,
      'x-baton-phase': envelope.phase,
      'x-baton-effect-id': envelope.effectId,
      'x-baton-attempt': envelope.attempt,
      'x-baton-schema': 1,
    };
    if (envelope.compensates) headers['x-baton-compensates'] = envelope.compensates;
    const span = childSpan(envelope.traceparent);
    if (span) headers.traceparent = span;
    const body = Buffer.from(JSON.stringify(reply.body), 'utf8');
    const properties = {
      type: reply.kind,
      messageId: crypto.randomUUID().replace(/-/g, ''),
      correlationId: envelope.sagaId,
      contentType: 'application/json',
      persistent: true,
      headers,
    };
    return { properties: this.keyring.sign(properties, body), body };
  }

  /** Publish the reply with a confirm, then ack; if publishing fails, requeue instead. */
  async reply(message, consumer, publisher, envelope, verdict) {
    const { properties, body } = this.replyMessage(envelope, verdict.reply);
    const t = this.topology;
    try {
      await publishConfirmed(publisher, t.repliesExchange, t.repliesQueue, body, properties);
    } catch (err) {
      this.log.warning('reply_publish_failed', { error: err });
      this.nack(consumer, message);
      return 'publish_failed';
    }
    this.ack(consumer, message);
    return verdict.outcome;
  }

  /**
   * Copy to the dead-letter queue with the reason, then ack. Already copied (a redelivery
   * after a lost ack): ack only. Marks unreadable or copy not confirmed: requeue after a
   * pause, so a message is never dead-lettered without its reason.
   */
  async deadLetter(message, consumer, publisher, reason) {
    const { messageId } = message.properties;
    let copied;
    try {
      copied = await this.marks.copied(this.queue, messageId, message.content);
    } catch (err) {
      this.log.warning('dead_letter_marks_unreachable', { queue: this.queue, error: err });
      await sleep(REQUEUE_DELAY_S);
      this.nack(consumer, message);
      return 'dead_letter';
    }
    if (copied) {
      this.log.info('dead_letter_already_copied', { queue: this.queue, message_id: messageId });
      this.ack(consumer, message);
      return 'dead_letter';
    }
    const copy = copyOf(message, this.queue, reason, this.sealer);
    try {
      await publishConfirmed(publisher, this.topology.deadLetterExchange, this.topology.deadLetterQueue, copy.body, copy.properties);
    } catch (err) {
      this.log.error('dead_letter_publish_failed', { queue: this.queue, reason, error: err });
      await sleep(REQUEUE_DELAY_S);
      this.nack(consumer, message);
      return 'dead_letter';
    }
    try {
      await this.marks.remember(this.queue, messageId, message.content);
    } catch (err) {
      this.log.warning('dead_letter_mark_failed', { queue: this.queue, error: err }); // a second copy at worst
    }
    this.ack(consumer, message);
    return 'dead_letter';
  }

  /**
   * Handling threw (a bug here, not in the handler: the responder catches those): requeue after
   * a pause, or dead-letter it as poison once it failed `poison_after` times.
   */
  async crashed(message, consumer, publisher, err) {
    const identity = `${message.properties.messageId || ''}:${crypto.createHash('sha256').update(message.content).digest('hex')}`;
    const failures = err instanceof TransientError ? 0 : (this.failures.get(identity) || 0) + 1;
    if (failures) {
      this.failures.delete(identity);
      this.failures.set(identity, failures);
      if (this.failures.size > FAILURES_KEPT) this.failures.delete(this.failures.keys().next().value);
    }
    this.log.error('command_crashed', { failures, error: err, stack: err && err.stack });
    if (this.settled.has(message)) return; // acked or requeued before the crash
    if (failures >= this.config.poisonAfter) {
      this.failures.delete(identity);
      await this.deadLetter(message, consumer, publisher, `poison: ${(err && err.name) || 'Error'}`);
      return;
    }
    await sleep(CRASH_PAUSE_S);
    this.nack(consumer, message);
  }

  ack(consumer, message) {
    if (this.settled.has(message)) return;
    this.settled.add(message);
    try {
      consumer.ack(message);
    } catch (err) { // the channel died: the command comes back and the inbox answers it
      this.log.warning('ack_failed', { error: err });
    }
  }

  nack(consumer, message) {
    if (this.settled.has(message)) return;
    this.settled.add(message);
    try {
      consumer.nack(message, false, true);
    } catch (err) { // a dead channel redelivers the message by itself
      this.log.warning('nack_failed', { error: err });
    }
  }

  /** The canonical log line and the metric of one message. */
  finish(kind, outcome, started, fields) {
    const seconds = (performance.now() - started) / 1000;
    const shown = typeof kind === 'string' ? kind.slice(0, 200) : '';
    this.metrics?.observe(shown, outcome, seconds);
    this.log.info('command_handled', { kind: shown, outcome, duration_ms: Math.round(seconds * 10000) / 10, ...fields });
  }
}

module.exports = { Worker, childSpan, publishConfirmed };
