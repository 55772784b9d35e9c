'use strict';
/**
 * JSON lines on stdout, one object per event: `timestamp`, `level`, `event`, then fields.
 *
 * Callers pass ids and codes only, never a message body, an address or a key: the fields
 * are written as given. Card numbers in any text field are masked all the same.
 */
const { maskPans } = require('./pan');

const LEVELS = { debug: 10, info: 20, warning: 30, error: 40 };

function clean(value) {
  if (typeof value === 'string') return maskPans(value);
  if (value instanceof Error) return maskPans(`${value.name}: ${value.message}`);
  return value;
}

class Log {
  constructor(level = 'info', fields = {}, write = (line) => process.stdout.write(line)) {
    if (!(level in LEVELS)) throw new Error(`BATON_LOG__LEVEL=${level}: one of ${Object.keys(LEVELS).join(', ')}`);
    this.level = level;
    this.fields = fields;
    this.write = write;
  }

  child(fields) {
    return new Log(this.level, { ...this.fields, ...fields }, this.write);
  }

  emit(level, event, fields = {}) {
    if (LEVELS[level] < LEVELS[this.level]) return;
    const entry = { timestamp: new Date().toISOString(), level, event };
    for (const [key, value] of Object.entries({ ...this.fields, ...fields })) {
      if (value !== undefined && value !== '') entry[key] = clean(value);
    }
    this.write(`${JSON.stringify(entry)}\n`);
  }

  debug(event, fields) {
    this.emit('debug', event, fields);
  }

  info(event, fields) {
    this.emit('info', event, fields);
  }

  warning(event, fields) {
    this.emit('warning', event, fields);
  }

  error(event, fields) {
    this.emit('error', event, fields);
  }
}

module.exports = { Log };
