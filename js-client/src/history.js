// Pages of a channel's history (protocol.md 5.11, 5.12), opt-in: 'rtlink-client/history'.
// Kept out of the main bundle for size. A read is one `history` frame on the client's
// connection (reads.js): it needs no subscription, works on every transport and from
// every tab sharing a connection, and is sent again on a new connection or after a
// temporary refusal. As Client.history of the Python client (rtlink/client/client.py).
import { RtlinkError } from './index.js';
import { read } from './reads.js';

/**
 * Read a page of `channel`'s kept history. Forward: at most `limit` publications
 * after `since` (or from the oldest kept), oldest first; read on after the last one
 * while its offset is below `page.position.offset`. `reverse`: at most `limit` before
 * `since` (or from the latest), newest first. `page.recovered` is false when `since`
 * was not honoured (another epoch, or trimmed: the page starts from what is kept).
 * Sent once the client is connected (call client.connect()). Rejects with an
 * RtlinkError: 'ReadError' (refused for good: the error code, 404, 401, 403, 422
 * ...), 'ClientClosed' (the client stopped first), or 'InvalidInput' (a limit that
 * is not 1 to 1000).
 * @param {object} client a Client
 * @param {string} channel the channel
 * @param {{since?: object, limit?: number, reverse?: boolean}} [options]
 * @returns {Promise<{channel: string, publications: {data: any, position: object}[],
 *   position: object, recovered: boolean}>}
 */
export async function history(client, channel, { since, limit = 100, reverse = false } = {}) {
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
    throw new RtlinkError('InvalidInput', null, 'limit must be from 1 to 1000');
  }
  return read(client, { type: 'history', channel, limit, reverse, ...(since && { since }) });
}
