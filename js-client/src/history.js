// Pages of a channel's history (protocol.md 5.11, 5.12), opt-in: 'rtlink-client/history'.
// Kept out of the main bundle for size. A read is one `history` frame sent by
// POST {path}/send (2.4) with the client's URL and credentials: it needs no
// subscription, works whatever transport the client uses (or whether its tabs share
// one connection), and reading twice does no harm. As Client.history of the Python
// client (rtlink/client/client.py).
import { RtlinkError } from './index.js';

/**
 * Read a page of `channel`'s kept history. Forward: at most `limit` publications
 * after `since` (or from the oldest kept), oldest first; read on after the last one
 * while its offset is below `page.position.offset`. `reverse`: at most `limit` before
 * `since` (or from the latest), newest first. `page.recovered` is false when `since`
 * was not honoured (another epoch, or trimmed: the page starts from what is kept).
 * Rejects with an RtlinkError: 'ReadError' (the server's error code: 404, 401,
 * 403, 422, 503 ...; or a close code when it refused the credentials), or
 * 'InvalidInput' (a limit that is not 1 to 1000).
 * @param {object} client a Client (its URL, token and fetch are used)
 * @param {string} channel the channel
 * @param {{since?: object, limit?: number, reverse?: boolean}} [options]
 * @returns {Promise<{channel: string, publications: {data: any, position: object}[],
 *   position: object, recovered: boolean}>}
 */
export async function history(client, channel, { since, limit = 100, reverse = false } = {}) {
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
    throw new RtlinkError('InvalidInput', null, 'limit must be from 1 to 1000');
  }
  const { token, fetch } = client._options;
  const secret = typeof token == 'function' ? await token() : token;
  const frame = { type: 'history', id: 1, channel, limit, reverse };
  if (since) frame.since = since;
  const response = await fetch(client._url + '/send?codec=json', {
    method: 'POST',
    body: JSON.stringify(frame),
    headers: { 'Content-Type': 'application/json', ...(secret && { Authorization: 'Bearer ' + secret }) },
  });
  const answers = (await response.text()).split('\n').filter((line) => line.trim()).map((line) => JSON.parse(line));
  for (const { type, id, code, message, reason, ...page } of answers) {
    if (type == 'history' && id == 1) return page;
    if (type == 'error' || type == 'close') throw new RtlinkError('ReadError', code, message ?? reason);
  }
  throw new RtlinkError('ReadError', null, `no answer: HTTP ${response.status}`);
}
