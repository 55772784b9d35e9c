'use strict';
/**
 * AMQP header tables decoded with their types kept, for amqplib.
 *
 * Why: a signature covers header values rendered from what travels (docs/protocol.md
 * "What is signed"): an integer renders `1`, a float `1712345728.0`. amqplib decodes every
 * number to a plain JS number, so the float `x-baton-deadline` (AMQP `f`, always a whole
 * number of seconds) could not be told from an integer and no command would verify. This
 * decoder replaces amqplib's `codec.decodeFields` and keeps floats as amqplib's own typed
 * values, `{'!': 'float', value}` / `{'!': 'double', value}`, which its encoder writes back
 * with the same tag (a dead-letter copy keeps every header as it came).
 *
 * It is also tolerant where amqplib is not, so one message can never break the connection:
 * a long string that is not UTF-8 stays a Buffer (like pamqp's bytes; it is refused later),
 * a table nested deeper than MAX_DEPTH or one that cannot be decoded is kept as raw bytes.
 *
 * amqplib's defs.js copies `codec.decodeFields` when it is first loaded, so `install` must run
 * before amqplib is required, and it patches only the amqplib version it was written against.
 */
const path = require('node:path');

const KNOWN_AMQPLIB = new Set(['2.3.1']);
const MAX_DEPTH = 32;
const UTF8 = new TextDecoder('utf-8', { fatal: true });
/** Marks a header table that could not be decoded at all (its message is dead-lettered). */
const UNDECODABLE = Symbol.for('baton.undecodable');

class Undecodable extends Error {}

function need(slice, offset, size) {
  if (offset + size > slice.length) throw new Undecodable('truncated field table');
}

function utf8OrBytes(bytes) {
  try {
    return UTF8.decode(bytes);
  } catch {
    return Buffer.from(bytes); // not text: kept as bytes, refused where text is needed
  }
}

/** Decode one value at `offset`; returns [value, next offset]. */
function decodeValue(slice, offset, depth) {
  need(slice, offset, 1);
  const tag = String.fromCharCode(slice[offset]);
  offset += 1;
  switch (tag) {
    case 'b':
      need(slice, offset, 1);
      return [slice.readInt8(offset), offset + 1];
    case 'B':
      need(slice, offset, 1);
      return [slice.readUInt8(offset), offset + 1];
    case 's':
      need(slice, offset, 2);
      return [slice.readInt16BE(offset), offset + 2];
    case 'u':
      need(slice, offset, 2);
      return [slice.readUInt16BE(offset), offset + 2];
    case 'I':
      need(slice, offset, 4);
      return [slice.readInt32BE(offset), offset + 4];
    case 'i':
      need(slice, offset, 4);
      return [slice.readUInt32BE(offset), offset + 4];
    case 'l': {
      need(slice, offset, 8);
      const big = slice.readBigInt64BE(offset);
      const safe = big <= BigInt(Number.MAX_SAFE_INTEGER) && big >= BigInt(Number.MIN_SAFE_INTEGER);
      return [safe ? Number(big) : { '!': 'long', value: big }, offset + 8];
    }
    case 'f':
      need(slice, offset, 4);
      return [{ '!': 'float', value: slice.readFloatBE(offset) }, offset + 4];
    case 'd':
      need(slice, offset, 8);
      return [{ '!': 'double', value: slice.readDoubleBE(offset) }, offset + 8];
    case 'D': {
      need(slice, offset, 5);
      const value = { places: slice[offset], digits: slice.readUInt32BE(offset + 1) };
      return [{ '!': 'decimal', value }, offset + 5];
    }
    case 'T':
      need(slice, offset, 8);
      return [{ '!': 'timestamp', value: Number(slice.readBigUInt64BE(offset)) }, offset + 8];
    case 't':
      need(slice, offset, 1);
      return [slice[offset] !== 0, offset + 1];
    case 'V':
      return [null, offset];
    case 'S':
    case 'x': {
      need(slice, offset, 4);
      const len = slice.readUInt32BE(offset);
      need(slice, offset + 4, len);
      const bytes = slice.subarray(offset + 4, offset + 4 + len);
      return [tag === 'S' ? utf8OrBytes(bytes) : Buffer.from(bytes), offset + 4 + len];
    }
    case 'F':
    case 'A': {
      need(slice, offset, 4);
      const len = slice.readUInt32BE(offset);
      need(slice, offset + 4, len);
      const inner = slice.subarray(offset + 4, offset + 4 + len);
      const end = offset + 4 + len;
      if (depth >= MAX_DEPTH) return [Buffer.from(inner), end];
      try {
        return [tag === 'F' ? decodeTable(inner, depth + 1) : decodeArray(inner, depth + 1), end];
      } catch (err) {
        if (err instanceof Undecodable || err instanceof RangeError) return [Buffer.from(inner), end];
        throw err;
      }
    }
    default:
      throw new Undecodable(`unknown field type ${JSON.stringify(tag)}`);
  }
}

function decodeTable(slice, depth) {
  const fields = {};
  let offset = 0;
  while (offset < slice.length) {
    const len = slice.readUInt8(offset);
    need(slice, offset + 1, len);
    const name = utf8OrBytes(slice.subarray(offset + 1, offset + 1 + len));
    if (typeof name !== 'string') throw new Undecodable('a header name that is not UTF-8');
    let value;
    [value, offset] = decodeValue(slice, offset + 1 + len, depth);
    fields[name] = value;
  }
  return fields;
}

function decodeArray(slice, depth) {
  const values = [];
  let offset = 0;
  while (offset < slice.length) {
    let value;
    [value, offset] = decodeValue(slice, offset, depth);
    values.push(value);
  }
  return values;
}

/** amqplib's `decodeFields` contract: a whole table; never throws for bytes a broker forwards. */
function decodeFields(slice) {
  try {
    return decodeTable(slice, 0);
  } catch (err) {
    if (!(err instanceof Undecodable || err instanceof RangeError)) throw err;
    const fields = {};
    Object.defineProperty(fields, UNDECODABLE, { value: String(err.message), enumerable: false });
    return fields;
  }
}

/** Patch amqplib (before its first require); throws on an amqplib this was not written for. */
function install() {
  const root = path.dirname(require.resolve('amqplib'));
  const { version } = require(path.join(root, 'package.json'));
  if (!KNOWN_AMQPLIB.has(version)) {
    throw new Error(
      `amqplib ${version}: the typed header decoder (lib/amqp-tables.js) was written for ` +
        `${[...KNOWN_AMQPLIB].join(', ')}; check its codec.js and add the version`,
    );
  }
  const defs = path.join(root, 'lib', 'defs.js');
  if (require.cache[defs]) throw new Error('amqplib was loaded before lib/amqp-tables.js installed');
  const codec = require(path.join(root, 'lib', 'codec.js'));
  codec.decodeFields = decodeFields;
}

module.exports = { install, decodeFields, UNDECODABLE, MAX_DEPTH };
