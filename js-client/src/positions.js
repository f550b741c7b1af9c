// Positions and cursors (protocol.md 4), as rtlink/positions.py. A position is a
// plain object {epoch, offset}; a cursor maps channel names to a position or null.
import { invalidInput } from './errors.js';
import { checkChannel, isText } from './names.js';

/** Whether a publication at `position` is new to a reader that has everything up to
 * `last` (null: nothing yet): another epoch (the channel's history was recreated),
 * or a higher offset in the same one. A repeat (same epoch, offset <= last's) is not. */
export const isAfter = (position, last) =>
  !last || position.offset > last.offset || position.epoch != last.epoch;

/** The text of a cursor, for `subs` (compact JSON). */
export const formatCursor = JSON.stringify;

/** Parse the text of a cursor (`subs`, `Last-Event-ID`); absent or empty text is no
 * channel. Throws InvalidInput, with the words of protocol.md 4.2, if it breaks a
 * rule. (The client does not need it; it is here for tests and tools.) */
export function parseCursor(text, limit = 256) {
  if (!text) return {};
  let raw;
  try {
    raw = JSON.parse(text);
  } catch {
    throw invalidInput('subs must be a JSON object');
  }
  if (!raw || typeof raw != 'object' || Array.isArray(raw)) {
    throw invalidInput('subs must be a JSON object of channel -> position or null');
  }
  const channels = Object.keys(raw);
  if (channels.length > limit) throw invalidInput(`at most ${limit} subscriptions`);
  const cursor = {};
  for (const channel of channels) {
    checkChannel(channel);
    const position = raw[channel];
    if (position === null) cursor[channel] = null;
    else if (!position || typeof position != 'object' || Array.isArray(position)) throw invalidInput('position must be a map');
    else if (!isText(position.epoch, 64)) throw invalidInput('position.epoch must be a non-empty string');
    else if (!(Number.isSafeInteger(position.offset) && position.offset >= 0)) {
      throw invalidInput('position.offset must be an integer >= 0');
    } else cursor[channel] = { epoch: position.epoch, offset: position.offset };
  }
  return cursor;
}
