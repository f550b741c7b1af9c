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
 * Read a page of `channel`'s kept history with one `POST {path}/send` (the client's
 * URL, token and fetch): forward, at most `limit` (1-1000, default 100) after `since`
 * (or from the oldest kept); `reverse`, at most `limit` before `since` (or from the
 * latest), newest first. Rejects with RtlinkError 'ReadError' (refused: 401, 403,
 * 404, 422, 503, ... or a close code) or 'InvalidInput' (limit).
 */
export function history(client: Client, channel: string,
                        options?: { since?: Position; limit?: number; reverse?: boolean }): Promise<HistoryPage>;
