#!/usr/bin/env node
'use strict';
/**
 * The checkout saga's shipping participant: `node index.js`, configured by `BATON_*` variables
 * (README.md). Runs until SIGTERM or SIGINT, then finishes the commands in flight and exits 0.
 * Exits 2 on bad configuration, 1 when RabbitMQ or Redis never became reachable.
 */
// Before anything loads amqplib: header tables must be decoded with their types (signatures).
require('./lib/amqp-tables').install();

const Redis = require('ioredis');
const config = require('./lib/config');
const { Log } = require('./lib/log');
const { Keyring } = require('./lib/signing');
const { RedisInbox } = require('./lib/inbox');
const { Shipping } = require('./lib/shipping');
const { Responder } = require('./lib/protocol');
const { DeadLetterMarks, Sealer } = require('./lib/dead-letters');
const { Worker } = require('./lib/worker');
const { Metrics, serve } = require('./lib/health');

const REDIS_TIMEOUT_MS = 2000; // a slower Redis counts as unreachable: the command is requeued

/** Wait for Redis to be ready, up to `waitS`; ioredis keeps reconnecting by itself after that. */
function redisReady(redis, waitS, log) {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`Redis not reachable within ${waitS}s`)), waitS * 1000);
    const onError = (err) => log.warning('redis_unreachable', { error: err });
    redis.on('error', onError);
    redis.once('ready', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function main() {
  let settings;
  let log = new Log('info', { participant: config.PARTICIPANT });
  let keyring;
  let sealer = null;
  try {
    settings = config.load();
    log = new Log(settings.logLevel, { participant: settings.participant });
    keyring = Keyring.fromSettings(settings.signing);
    if (settings.sealing) sealer = new Sealer(settings.sealing.keys, settings.sealing.active);
  } catch (err) {
    log.error('configuration_invalid', { error: err.message });
    return 2;
  }
  if (!sealer) log.warning('dead_letters_unsealed', { hint: 'set BATON_SEALING__KEYS to seal dead-letter bodies' });

  const redis = new Redis(settings.redisUrl, {
    enableOfflineQueue: false, // Redis away: fail at once (requeue), never queue the command
    maxRetriesPerRequest: 1,
    commandTimeout: REDIS_TIMEOUT_MS,
    connectionName: `baton-${settings.participant}`,
  });
  redis.on('error', () => {}); // reported by the commands that fail; never crashes the process
  const topology = config.topology(settings.namespace, settings.participant);
  const shipping = new Shipping(redis, settings.namespace);
  const inbox = new RedisInbox(redis, settings.namespace, settings.participant, { ttlS: settings.inboxTtlS });
  const responder = new Responder({
    inbox,
    handlers: shipping.handlers,
    leaseS: settings.leaseS,
    redeliverMinS: settings.redeliverMinS,
    redeliverMaxS: settings.redeliverMaxS,
    log,
  });
  const metrics = new Metrics(settings.participant, [...shipping.handlers.keys()]);
  const worker = new Worker({
    config: settings,
    topology,
    keyring,
    responder,
    marks: new DeadLetterMarks(redis, settings.namespace),
    sealer,
    log,
    metrics,
  });

  let signals = 0;
  const onSignal = (signal) => {
    signals += 1;
    if (signals > 1) {
      log.warning('forced_exit', { signal });
      process.exit(1);
    }
    log.info('stopping', { signal });
    worker.stop();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  let server = null;
  try {
    if (settings.metricsPort) {
      server = await serve({
        host: settings.metricsHost,
        port: settings.metricsPort,
        checks: { rabbitmq: () => worker.ready, redis: () => redis.status === 'ready' },
        metrics,
        log,
      });
    }
    await Promise.race([redisReady(redis, settings.connectWaitS, log), worker.stopped]);
    if (!worker.stopping) {
      log.info('starting', { queue: topology.commandQueue, namespace: settings.namespace, signer: keyring.signer, key_id: keyring.keyId });
    }
    await worker.run();
    return 0;
  } catch (err) {
    log.error('participant_failed', { error: err });
    return 1;
  } finally {
    if (server) server.close();
    redis.disconnect();
  }
}

main().then((code) => {
  process.exitCode = code;
  // Timers of a lost connection must not hold the process open after a clean stop.
  setImmediate(() => process.exit(code));
});
