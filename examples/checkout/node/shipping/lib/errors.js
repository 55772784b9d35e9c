'use strict';
/**
 * What a handler may throw, and what the worker makes of it (docs/protocol.md "Outcomes"):
 *
 * - StepRejected: a business refusal, final: `StepFailed(reason, retriable=false)` stored and replied;
 * - TransientError: the participant's own infrastructure failed: nothing stored, no reply,
 *   the command requeued after a jittered pause;
 * - anything else is a bug: `StepFailed("internal_error", retriable=true)`, nothing stored.
 */
const { ReplyError } = require('ioredis');

class StepRejected extends Error {
  constructor(reason, detail = '') {
    super(detail ? `${reason}: ${detail}` : reason);
    this.name = 'StepRejected';
    this.reason = reason;
    this.detail = detail;
  }
}

class TransientError extends Error {
  constructor(message, cause) {
    super(message, { cause });
    this.name = 'TransientError';
  }
}

/** A Redis reply that says "not now" (the server loading, busy, failing over): infrastructure. */
const PASSING = /^(LOADING|BUSY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN|READONLY|NOREPLICAS)\b/;

/**
 * `await call()`, a failure to reach Redis turned into TransientError (infrastructure). A
 * Redis ReplyError for a bad command (WRONGTYPE, a script error) stays what it is: a bug.
 */
async function redisCall(call) {
  try {
    return await call();
  } catch (err) {
    if (err instanceof ReplyError && !PASSING.test(err.message)) throw err;
    throw new TransientError(`redis: ${err.name || 'Error'}`, err);
  }
}

module.exports = { StepRejected, TransientError, redisCall };
