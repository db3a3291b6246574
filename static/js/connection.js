// One interface for "a connection that delivers events and says how it is",
// spoken by every layer of the browser side: one attempt at a transport
// (transport.js, the chat's loop), the recovery loop that keeps it open
// (recovery.js), tab sharing, which wraps a connection and returns one
// (tabs.js), and the page, which only listens (page.js).
//
// A Connection is an EventTarget. `open(lastEventId)` starts it, resuming
// after that id; `close()` stops it, and it may be opened again. It
// dispatches one kind of event per thing it says, the value in `detail`:
//   event      {type, data, lastEventId}: an event of the stream, in order
//   status     'connecting', 'connected' or 'closed'
//   transport  'eventsource' or 'longpoll'
//   notice     a sentence for the reader (why the transport changed)
//   role       'leader', 'follower' or 'alone' (tab sharing)
//   wire       a short text record of what it did on the wire: a request
//              and how it ended, an event's id, a wait before a retry
// The latest status, transport and role are kept in `latest`, for a
// listener that comes later.

export const KINDS = ['event', 'status', 'transport', 'notice', 'role', 'wire'];
const STATES = ['status', 'transport', 'role'];

/** What a Connection dispatches: an Event of the kind, its value in `detail`. */
export class ConnectionEvent extends Event {
  constructor(kind, detail) {
    super(kind);
    this.detail = detail;
  }
}

export class Connection extends EventTarget {
  latest = {};

  /** Starts delivering the events after `lastEventId` ('' for all). */
  open(lastEventId = '') {
    throw new Error(`${this.constructor.name} cannot open (from '${lastEventId}')`);
  }

  /** Stops: no more requests, and nothing more is said until it is opened again. */
  close() {}

  say(kind, detail) {
    if (STATES.includes(kind)) this.latest[kind] = detail;
    this.dispatchEvent(new ConnectionEvent(kind, detail));
  }
}

/**
 * listen(connection, { status: (state) => ..., event: (ev) => ... }): one
 * handler per kind, called with the value. Returns what removes them all.
 */
export function listen(connection, handlers) {
  const listeners = Object.entries(handlers).map(([kind, handler]) => [kind, (e) => handler(e.detail)]);
  for (const [kind, listener] of listeners) connection.addEventListener(kind, listener);
  return () => {
    for (const [kind, listener] of listeners) connection.removeEventListener(kind, listener);
  };
}
