'use strict';
/**
 * Card numbers (PANs) in free text: the rule of contracts/pan.py, so the address field refuses
 * what Baton's Python contracts refuse, and logs and dead-letter reasons never carry one.
 *
 * A PAN is 12 to 19 digits passing Luhn, standing alone: a run of digits optionally grouped by
 * single spaces or dashes, not glued to more letters or digits.
 */
const MIN_DIGITS = 12;
const MAX_DIGITS = 19;
const MASK = '[card number removed]';
const GROUPED = /(?<![0-9A-Za-z])\d(?:[ -]?\d)*(?![0-9A-Za-z])/gu;
const LONG_ENOUGH = /\d(?:[ -]?\d){11}/u;

function luhnValid(digits) {
  let total = 0;
  for (let i = 0; i < digits.length; i += 1) {
    let value = Number(digits[digits.length - 1 - i]);
    if (i % 2) value = value > 4 ? value * 2 - 9 : value * 2;
    total += value;
  }
  return total % 10 === 0;
}

function panSpans(text) {
  const found = [];
  for (const match of text.matchAll(GROUPED)) {
    const digits = match[0].replace(/[ -]/g, '');
    if (digits.length >= MIN_DIGITS && digits.length <= MAX_DIGITS && luhnValid(digits)) {
      found.push([match.index, match.index + match[0].length]);
    }
  }
  return found;
}

function containsPan(text) {
  return LONG_ENOUGH.test(text) && panSpans(text).length > 0;
}

function maskPans(text) {
  if (!containsPan(text)) return text;
  let out = text;
  for (const [start, end] of panSpans(text).reverse()) out = out.slice(0, start) + MASK + out.slice(end);
  return out;
}

module.exports = { containsPan, maskPans, luhnValid };
