// "On the wire": the last things this page's connection did, as short lines
// of text, newest first, in <details id="wire">. It shows the mechanism the
// tutorial teaches: a held GET /chat/get/5 answered 3.2 s later, the id a
// reconnect resumes from, the wait before a retry and why.
//
// The lines are the connection's `wire` records (connection.js): every
// layer says what it did in a few words, and this view only keeps and draws
// them, with each change of transport that the same connection says.
// Watching must never slow the stream: while the panel is closed a
// record costs one short string in a list of at most 50, and no DOM work;
// the list is drawn when the panel opens, then one <li> per record.

export const WIRE_LENGTH = 50; // lines kept, and shown

const DATA_SHOWN = 60; // characters of an event's data a line keeps

/** The last `length` lines, newest first. */
export class WireLog {
  #lines = [];

  constructor(length = WIRE_LENGTH) {
    this.length = length;
  }

  /** Keep `line` as the newest; the oldest beyond `length` goes. */
  add(line) {
    this.#lines.unshift(line);
    if (this.#lines.length > this.length) this.#lines.pop();
  }

  /** Newest first (a copy). */
  get lines() {
    return [...this.#lines];
  }
}

// --- Wording, for the layers that say `wire` records ---------------------

/** `ms` as people read a wait or a hold: `850 ms`, `3.2 s`. */
export function duration(ms) {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/**
 * An event as the stream sent it, on one short line: `id: 7 data: 101.25`,
 * `event: reset id: e:3 data: 3`. Line breaks in the data show as ⏎, and
 * long data is cut. A heartbeat carries no id (its lastEventId is only the
 * one the source still holds), so none is shown.
 */
export function eventLine({ type, data, lastEventId }) {
  const line = String(data ?? '').replace(/\r\n|\r|\n/g, '⏎');
  const shown = line.length > DATA_SHOWN ? `${line.slice(0, DATA_SHOWN - 1)}…` : line;
  const kind = type && type !== 'message' ? `event: ${type} ` : '';
  const id = lastEventId && type !== 'heartbeat' ? `id: ${lastEventId} ` : '';
  return `${kind}${id}data: ${shown}`;
}

// --- The view ---------------------------------------------------------------

/**
 * Keeps what `connection` says of kind `wire` (and each change of
 * `transport`) in `log`, and shows it in `details` (the
 * <details id="wire">, whose list is its <ul>) while that is open.
 * Returns what stops listening.
 */
export function showWire(details, connection, log = new WireLog()) {
  const list = details.querySelector('ul');

  function item(line) {
    const li = document.createElement('li');
    li.textContent = line;
    return li;
  }

  function toggled() {
    // Closed, the panel keeps nothing up to date; opened, it starts afresh.
    list.replaceChildren(...(details.open ? log.lines.map(item) : []));
  }

  function add(line) {
    log.add(line);
    if (!details.open) return;
    list.prepend(item(line));
    while (list.childElementCount > log.length) list.lastElementChild.remove();
  }

  // The transport is state, said at every open: a line for each change.
  let transport = null;
  const listeners = {
    wire: ({ detail }) => add(detail),
    transport: ({ detail }) => {
      if (detail !== transport) add(`⇄ transport: ${detail}`);
      transport = detail;
    },
  };
  details.addEventListener('toggle', toggled);
  for (const [kind, listener] of Object.entries(listeners)) connection.addEventListener(kind, listener);
  toggled();
  return () => {
    details.removeEventListener('toggle', toggled);
    for (const [kind, listener] of Object.entries(listeners)) connection.removeEventListener(kind, listener);
  };
}
