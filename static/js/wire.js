// "On the wire": the last things this page's connection did, as short lines
// of text, newest first, in <details id="wire">. It shows the mechanism the
// tutorial teaches: a held GET /chat/get/5 answered 3.2 s later, the id a
// reconnect resumes from, the wait before a retry and why.
//
// Watching must never slow the stream. While the panel is closed a record
// costs one short string in a list of at most 50, and no DOM work; the
// list is drawn when the panel opens, then one <li> per record.

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

/** `ms` as people read a wait or a hold: `850 ms`, `3.2 s`. */
export function duration(ms) {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** An event's data on one short line: line breaks shown as ⏎, long data cut. */
function shortData(data) {
  const line = String(data).replace(/\r\n|\r|\n/g, '⏎');
  return line.length > DATA_SHOWN ? `${line.slice(0, DATA_SHOWN - 1)}…` : line;
}

/**
 * One record of the connection's `wire` kind as a line of text. The records:
 *   {what: 'request', method, url, cursor?, lastEventId?}  a request went out
 *   {what: 'answer', method, url, status, ms}               it was answered
 *   {what: 'failure', method?, url?, error, ms?}             it failed (network, timeout)
 *   {what: 'open', url, lastEventId?}                       a native EventSource was opened
 *   {what: 'opened', url}                                   ... and its response started
 *   {what: 'event', type, id?, data}                        an event arrived
 *   {what: 'wait', ms, why}                                 the next try comes after ms
 *   {what: 'switch', to, why}                               another transport from now on
 *   {what: 'handover', role, lastEventId?}                  the tabs' leader changed
 *   {what: 'closed', why}                                   the page closed the connection
 * `relayed: true` marks a record the leader tab relayed to this one.
 */
export function describe(record) {
  const line = describeOwn(record);
  return record.relayed ? `relayed · ${line}` : line;
}

function describeOwn(record) {
  switch (record.what) {
    case 'request': {
      const carried = record.lastEventId !== undefined && record.lastEventId !== null
        ? ` · Last-Event-ID: ${record.lastEventId || '(none)'}`
        : record.cursor !== undefined && record.cursor !== null ? ` · cursor ${record.cursor}` : '';
      return `→ ${record.method ?? 'GET'} ${record.url}${carried}`;
    }
    case 'answer': {
      const held = record.ms >= 1000 ? ` · held ${duration(record.ms)}` : '';
      return `← ${record.status} ${record.url}${held}`;
    }
    case 'failure': {
      const after = record.ms !== undefined ? ` after ${duration(record.ms)}` : '';
      return `✕ ${record.url ? `${record.url}: ` : ''}${record.error}${after}`;
    }
    case 'open': {
      const from = record.lastEventId ? ` · resumes from id ${record.lastEventId}` : '';
      return `→ new EventSource(${record.url})${from}`;
    }
    case 'opened':
      return `← open ${record.url}`;
    case 'event': {
      const type = record.type && record.type !== 'message' ? `event: ${record.type} ` : '';
      const id = record.id ? `id: ${record.id} ` : '';
      return `${type}${id}data: ${shortData(record.data ?? '')}`;
    }
    case 'wait':
      return `… wait ${duration(record.ms)} (${record.why})`;
    case 'switch':
      return `⇄ switched to ${record.to}: ${record.why}`;
    case 'handover': {
      const from = record.lastEventId ? `, resuming from id ${record.lastEventId}` : '';
      return `⇄ this tab is now the ${record.role}${from}`;
    }
    case 'closed':
      return `✕ closed: ${record.why}`;
    default:
      return String(record.what);
  }
}

/**
 * Shows `log` in `details` (the <details id="wire">), whose list is its
 * <ul>: `show(record)` keeps a record and, only while the panel is open,
 * draws it. Opening draws what is kept.
 */
export function wireView(details, log = new WireLog()) {
  const list = details.querySelector('ul');

  function item(line) {
    const li = document.createElement('li');
    li.textContent = line;
    return li;
  }

  details.addEventListener('toggle', () => {
    if (details.open) list.replaceChildren(...log.lines.map(item));
    else list.replaceChildren(); // closed, the panel keeps no DOM up to date
  });

  return function show(record) {
    const line = describe(record);
    log.add(line);
    if (!details.open) return;
    list.prepend(item(line));
    while (list.childElementCount > log.length) list.lastElementChild.remove();
  };
}
