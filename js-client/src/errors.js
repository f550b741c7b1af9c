// The one error class of the client. `name` tells the kind, as the Python client's
// exception classes do: 'ClientClosed', 'PublishError', 'SubscribeError', 'OutboxFull'.

export class RtlinkError extends Error {
  /**
   * @param {string} name the kind of error
   * @param {number|null} code the close code (ClientClosed) or error code (7.1)
   * @param {string} message for people
   */
  constructor(name, code, message) {
    super(message);
    this.name = name;
    this.code = code ?? null;
  }
}
