// Type declarations for src/positions.js ('rtlink-client/positions'): positions and
// cursors (protocol.md 4), with the names of rtlink.positions in Python (camelCase).
// Not in the main bundle: the client uses them inside, an application rarely needs them.
import type { Position } from './index.js';

export type { Position };

/** Channel names mapped to the position reached in each, or null (none yet). */
export type Cursor = Record<string, Position | null>;

/** Whether a publication at `position` is new to a reader that has everything up to
 * `last` (null: nothing yet): another epoch, or a higher offset in the same one. */
export function isAfter(position: Position, last: Position | null | undefined): boolean;
/** The text of a cursor, as the `subs` query parameter carries it (compact JSON). */
export function formatCursor(cursor: Cursor): string;
/** Parse the text of a cursor (`subs`, `Last-Event-ID`; at most `limit` channels,
 * default 256). Throws an RtlinkError named 'InvalidInput' if it breaks a rule. */
export function parseCursor(text: string | null | undefined, limit?: number): Cursor;
