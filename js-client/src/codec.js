// Codecs turn frames into transport messages and back (protocol.md 3). The client
// encodes each frame on its own ("parts") and joins parts into one message per send,
// so it can keep every message within the server's max_message_size.
import { decode, encode, utf8 } from './msgpack.js';

export const codecs = {
  json: {
    name: 'json',
    _encode: JSON.stringify,
    // A JSON frame never holds a raw newline, so one separates the frames of a message.
    _join: (parts) => parts.join('\n'),
    _size: (part) => utf8.encode(part).length,
    _separator: 1,
    _read: (response) => response.text(),
    _parse: (message) =>
      (typeof message == 'string' ? message : new TextDecoder().decode(message))
        .split('\n')
        .filter((line) => line.trim())
        .map((line) => JSON.parse(line)),
    // SSE events carry the JSON message as is.
    _fromEvent: (data) => data,
  },
  msgpack: {
    name: 'msgpack',
    _encode: encode,
    // msgpack values are self-delimiting: the frames of a message are concatenated.
    _join: (parts) => new Uint8Array(parts.flatMap((part) => [...part])),
    _size: (part) => part.length,
    _separator: 0,
    _read: async (response) => new Uint8Array(await response.arrayBuffer()),
    _parse: (message) => decode(new Uint8Array(message)),
    // SSE carries msgpack messages in base64 (2.2).
    _fromEvent: (data) => Uint8Array.from(atob(data), (char) => char.charCodeAt(0)),
  },
};

/** Decode one transport message into frames. Throws if it is undecodable (3.3):
 * not valid in the codec, empty, or a value that is not a map with a string type. */
export function decodeFrames(codec, message) {
  const frames = codec._parse(message);
  if (!frames.length || frames.some((frame) => typeof frame?.type != 'string')) throw Error('no frames');
  return frames;
}
