// Type declarations for 'rtlink-client/history' (src/history.js, dist/history.mjs):
// pages of a channel's history, kept out of the main bundle for size.
import type { Client, Position } from './index.js';

/** A page of a channel's history (protocol.md 5.12). */
export interface HistoryPage {
  channel: string;
  /** The page: oldest first, or newest first when read in reverse. */
  publications: { data: unknown; position: Position }[];
  /** The channel's latest position. */
  position: Position;
  /** False when `since` was not honoured (another epoch, past the channel's end, or,
   * forward, trimmed): the page starts from the oldest kept (or the latest). */
  recovered: boolean;
}

/**
 * Read a page of `channel`'s kept history: one `history` frame on the client's
 * connection, on every transport (over SSE and long polling it goes by
 * `POST {path}/send`), from any tab sharing a connection; sent once connected (call
 * connect()), again on a new connection and after a temporary refusal (429, 5xx).
 * Forward, at most `limit` (1-1000, default 100) after `since` (or from the oldest
 * kept); `reverse`, at most `limit` before `since` (or from the latest), newest first.
 * Rejects with RtlinkError 'ReadError' (refused for good: 401, 403, 404, 422, ...),
 * 'ClientClosed' (the client stopped first) or 'InvalidInput' (limit).
 */
export function history(client: Client, channel: string,
                        options?: { since?: Position; limit?: number; reverse?: boolean }): Promise<HistoryPage>;
