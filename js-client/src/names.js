// The names the protocol carries as text, and their rules (protocol.md 9), as
// rtlink/names.py: channel names, idempotency keys and epochs.
import { invalidInput } from './errors.js';

const CHANNEL_NAME = /^[\w\-.:@/=+,#]{1,255}$/;

/** Whether `value` is a string of 1 to `maxLength` characters (code points, as
 * Python counts them) without lone surrogates: the rule of keys and epochs. */
export const isText = (value, maxLength) =>
  typeof value == 'string' && (value.isWellFormed?.() ?? true) && !!value && [...value].length <= maxLength;

/** Throw InvalidInput unless `channel` is a valid channel name. */
export function checkChannel(channel) {
  if (typeof channel != 'string' || !CHANNEL_NAME.test(channel)) throw invalidInput(`invalid channel '${channel}'`);
}

/** Throw InvalidInput unless `key` is null/undefined or a valid idempotency key
 * (1-128 characters, no lone surrogates). */
export function checkKey(key) {
  if (key != null && !isText(key, 128)) throw invalidInput(`invalid key '${key}'`);
}
