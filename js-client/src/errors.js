// The one error class of the client. `name` is the name of the Python client's class
// of the same error (rtlink/errors.py), so one check reads the same in both:
//
//   Python (rtlink.errors)        JavaScript
//   RtlinkError                   RtlinkError, name 'RtlinkError' (unsubscribed before
//                                 the server confirmed)
//   InvalidInput (a ValueError)   RtlinkError, name 'InvalidInput': a bad channel name,
//                                 data, key, option or event name, refused locally
//   SubscribeError, PublishError  RtlinkError, name 'SubscribeError' / 'PublishError'
//   OutboxFull                    RtlinkError, name 'OutboxFull'
//   ClientClosed                  RtlinkError, name 'ClientClosed'
//
// One class with a `name` rather than a subclass each: `instanceof RtlinkError` and
// `error.name == 'PublishError'` both work, for fewer bytes. `code` is the close code
// (ClientClosed) or the error code (7.1) of a request error, else null.

export class RtlinkError extends Error {
  /**
   * @param {string} name the kind of error (see above)
   * @param {number|null} code the close code (ClientClosed) or error code (7.1)
   * @param {string} message for people
   */
  constructor(name, code, message) {
    super(message);
    this.name = name;
    this.code = code; // every caller gives one, or null
  }
}

/** The error of input refused locally (InvalidInput). */
export const invalidInput = (message) => new RtlinkError('InvalidInput', null, message);
