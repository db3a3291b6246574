// EventSource over long polling, for networks where a stream cannot work: a
// proxy or virus scanner that buffers the response. Each request carries `X-Event-Source-Simulate:
// Long-Polling`; the server answers one batch of events in the ordinary
// text/event-stream framing and ends the response, and we ask again with the
// id we now hold. Plain script, no modules: it defines the globals
//   parseEventStream(text, state)   the WHATWG parser, as a pure function
//   LongPollEventSource(url)        the EventSource interface over that loop
//   openEventSource(url, {transport})  a native EventSource or a LongPollEventSource
// and nothing else: choosing a transport and reopening after failures is the
// page's job (static/js/recovery.js).
'use strict';

// A poll still unanswered after this long is given up, as after a network
// error, and asked again (see #poll). The server this polyfill was written
// for holds a poll 25 s at most (--poll-timeout); 5 s more for the network.
// A page that knows its server's hold says so: {abandonAfterMs}.
const ABANDON_AFTER_MS = 30000;

/**
 * Interpret one response body by the WHATWG HTML "Event stream
 * interpretation" steps, in the spec's order.
 *
 * `state` holds what outlives a response: the source's last event ID and its
 * reconnection time. The result holds the events to dispatch plus the new
 * state, so `parseEventStream(second, parseEventStream(first))` goes on
 * where the first body stopped.
 */
function parseEventStream(text, { lastEventId = '', reconnectionTime = 2000 } = {}) {
  const events = [];

  // The stream is decoded as UTF-8 (the caller's job) and one leading
  // U+FEFF BYTE ORDER MARK, if present, is ignored.
  if (text.startsWith('\uFEFF')) text = text.slice(1);

  // "A data buffer, an event type buffer, and a last event ID buffer." The
  // last one starts from the ID the source already holds (as browsers do),
  // so an id persists across events and across responses.
  let data = '';
  let eventType = '';
  let lastEventIdBuffer = lastEventId;

  function processField(field, value) {
    switch (field) {
      case 'event': // Set the event type buffer to the value.
        eventType = value;
        break;
      case 'data': // Append the value, then one LF, to the data buffer.
        data += value + '\n';
        break;
      case 'id': // Unless the value contains NUL, set the last event ID buffer.
        if (!value.includes('\u0000')) lastEventIdBuffer = value;
        break;
      case 'retry': // Only ASCII digits: set the reconnection time.
        if (/^[0-9]+$/.test(value)) reconnectionTime = parseInt(value, 10);
        break;
      default: // Any other field is ignored.
    }
  }

  // tutorial: parser-dispatch
  function dispatch() {
    // 1. The source's last event ID becomes the buffer's; the buffer is not
    //    reset, so the ID holds until the server sends another `id:`.
    lastEventId = lastEventIdBuffer;
    // 2. If the data buffer is empty, reset the buffers and return.
    if (data === '') {
      eventType = '';
      return;
    }
    // 3. Remove one trailing LF from the data buffer.
    if (data.endsWith('\n')) data = data.slice(0, -1);
    // 4-6. A MessageEvent carrying the data and the last event ID, of type
    //    "message" unless the event type buffer names another.
    events.push({ type: eventType || 'message', data, lastEventId });
    // 7. Reset the data and event type buffers.
    data = '';
    eventType = '';
  }
  // end tutorial: parser-dispatch

  // Lines end in CRLF, a lone LF or a lone CR. Whatever follows the last
  // line end is an unfinished line and is never processed.
  const lines = text.split(/\r\n|\r|\n/);
  lines.pop();

  for (const line of lines) {
    const colon = line.indexOf(':');
    if (line === '') {
      // A blank line dispatches the event.
      dispatch();
    } else if (colon === 0) {
      // A line starting with a colon is a comment: ignore it.
    } else if (colon > 0) {
      // Field name before the first colon, value after it, minus one
      // leading space.
      let value = line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      processField(line.slice(0, colon), value);
    } else {
      // No colon: the whole line is the field name, the value is empty.
      processField(line, '');
    }
  }

  // End of the body: an event still without its blank line is discarded.
  return { events, lastEventId, reconnectionTime };
}

/**
 * The EventSource interface, fed by one long poll after another. It opens,
 * fails and reconnects as the WHATWG spec says a native EventSource does:
 * a 200 text/event-stream answer opens it; any other answer (204 included)
 * closes it for good; a network error fires `error` and retries after the
 * reconnection time, and so does a poll left unanswered past
 * `abandonAfterMs`. Unlike a native EventSource, the `error` that closes it
 * tells why: `event.status` (the HTTP status) and `event.retryAfter` (the
 * answer's Retry-After header, or null), so a page can choose when to try
 * again. And unlike a native one it can show its requests: `onwire`, when
 * set, is called with a short line of text for each request, how it ended
 * and each wait before the next (the pages' "On the wire" panel).
 */
class LongPollEventSource extends EventTarget {
  #url;
  #readyState = 0;
  #lastEventId = '';
  #reconnectionTime = 2000;
  #request = null; // the AbortController of the poll in flight
  #timer = null; // the pending reconnection
  #abandonAfterMs;

  constructor(url, { abandonAfterMs = ABANDON_AFTER_MS } = {}) {
    super();
    this.#url = new URL(url, document.baseURI).href;
    this.#abandonAfterMs = abandonAfterMs;
    this.onopen = null;
    this.onmessage = null;
    this.onerror = null;
    this.onwire = null;
    for (const type of ['open', 'message', 'error']) {
      this.addEventListener(type, (event) => this['on' + type]?.call(this, event));
    }
    // Not at once: as a native EventSource fetches in parallel, so handlers
    // set just after construction (onwire) see the first request too.
    queueMicrotask(() => {
      if (this.#readyState !== this.CLOSED) this.#poll();
    });
  }

  get url() { return this.#url; }
  get readyState() { return this.#readyState; }
  get withCredentials() { return false; }

  close() {
    this.#readyState = this.CLOSED;
    this.#request?.abort();
    clearTimeout(this.#timer);
  }

  async #poll() {
    const headers = {
      'Accept': 'text/event-stream',
      'Cache-Control': 'no-cache',
      'X-Event-Source-Simulate': 'Long-Polling',
    };
    // After an empty `id:` the source holds no ID, and sends none.
    if (this.#lastEventId !== '') headers['Last-Event-ID'] = this.#lastEventId;
    const sent = this.#wireRequest();

    // tutorial: abandon
    // The server answers a poll within its longest hold. One unanswered
    // past that went down a connection that fell silent without closing
    // (a laptop waking from sleep, a phone changing networks, a NAT that
    // forgot the mapping): nothing would ever end it, so give it up.
    const request = this.#request = new AbortController();
    const abandon = setTimeout(() => request.abort(), this.#abandonAfterMs);
    let response, body;
    try {
      response = await fetch(this.#url, { headers, cache: 'no-store', signal: request.signal });
      this.#wireAnswer(response, sent);
      if (response.status !== 200 || !isEventStream(response)) {
        this.#fail(response);
        return;
      }
      this.#announce();
      // Decode without dropping a BOM: the parser drops exactly one.
      body = new TextDecoder('utf-8', { ignoreBOM: true }).decode(await response.arrayBuffer());
    } catch {
      this.#wireFailure(request, sent);
      this.#reconnect(); // a network error, given up, or close() aborting us
      return;
    } finally {
      clearTimeout(abandon);
    }
    // end tutorial: abandon

    const result = parseEventStream(body, {
      lastEventId: this.#lastEventId,
      reconnectionTime: this.#reconnectionTime,
    });
    this.#lastEventId = result.lastEventId;
    this.#reconnectionTime = result.reconnectionTime;

    const origin = new URL(response.url).origin;
    for (const { type, data, lastEventId } of result.events) {
      if (this.#readyState === this.CLOSED) return; // a listener called close()
      this.dispatchEvent(new MessageEvent(type, { data, lastEventId, origin }));
    }
    // The batch is over: ask for the next one at once.
    if (this.#readyState !== this.CLOSED) this.#poll();
  }

  // tutorial: reconnect
  // "Announce the connection": OPEN and `open`, once per (re)connection.
  #announce() {
    if (this.#readyState === this.CONNECTING) {
      this.#readyState = this.OPEN;
      this.dispatchEvent(new Event('open'));
    }
  }

  // "Fail the connection": CLOSED, `error`, and no more requests. The
  // event says which answer failed it: a native EventSource hides that.
  #fail(response) {
    if (this.#readyState === this.CLOSED) return;
    this.close();
    const event = new Event('error');
    event.status = response.status;
    event.retryAfter = response.headers.get('Retry-After');
    this.dispatchEvent(event);
  }

  // "Reestablish the connection": CONNECTING, `error`, then a new request
  // after the reconnection time, unless a listener closed the source.
  #reconnect() {
    if (this.#readyState === this.CLOSED) return;
    this.#readyState = this.CONNECTING;
    this.dispatchEvent(new Event('error'));
    if (this.#readyState === this.CLOSED) return;
    this.#timer = setTimeout(() => this.#poll(), this.#reconnectionTime);
  }
  // end tutorial: reconnect

  // --- On the wire: what each request carried and how it ended ---------

  #wire(line) {
    this.onwire?.call(this, line);
  }

  // The request about to go: the id it resumes from, as the Last-Event-ID
  // header or, for a new source, the page's ?lastEventId. Returns the time.
  #wireRequest() {
    const { pathname, searchParams } = new URL(this.#url);
    const fromQuery = searchParams.get('lastEventId');
    this.#wire(`→ GET ${pathname} · ` + (this.#lastEventId !== '' ? `Last-Event-ID: ${this.#lastEventId}`
      : fromQuery !== null ? `?lastEventId=${fromQuery}` : 'no Last-Event-ID'));
    return Date.now();
  }

  #wireAnswer(response, sent) {
    const retryAfter = response.headers.get('Retry-After');
    this.#wire(`← ${response.status} ${new URL(this.#url).pathname} · held ${LongPollEventSource.#duration(Date.now() - sent)}` +
      (retryAfter === null ? '' : ` · Retry-After: ${retryAfter}`));
  }

  // Not when close() aborted it: the page left, nothing failed.
  #wireFailure(request, sent) {
    if (this.#readyState === this.CLOSED) return;
    const why = request.signal.aborted ? 'given up, unanswered' : 'network error';
    this.#wire(`✕ ${new URL(this.#url).pathname}: ${why} after ${LongPollEventSource.#duration(Date.now() - sent)}` +
      ` · next try in ${LongPollEventSource.#duration(this.#reconnectionTime)} (retry: ${this.#reconnectionTime})`);
  }

  // A hold or a wait as people read it: `850 ms`, `3.2 s`.
  static #duration(ms) {
    return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
  }
}

// The readyState constants, read-only on the constructor and on instances,
// as on EventSource.
for (const [name, value] of [['CONNECTING', 0], ['OPEN', 1], ['CLOSED', 2]]) {
  Object.defineProperty(LongPollEventSource, name, { value, enumerable: true });
  Object.defineProperty(LongPollEventSource.prototype, name, { value, enumerable: true });
}
// A class declaration does not become a property of window; make it one,
// like EventSource.
window.LongPollEventSource = LongPollEventSource;

// Content-Type must be text/event-stream; parameters such as charset are fine.
function isEventStream(response) {
  const type = response.headers.get('Content-Type') ?? '';
  return type.split(';')[0].trim().toLowerCase() === 'text/event-stream';
}

/**
 * A native EventSource for `eventsource` (the default where the browser has
 * one), else a LongPollEventSource (given `abandonAfterMs`, when set): the
 * same interface either way.
 */
function openEventSource(url, { transport, abandonAfterMs } = {}) {
  const native = typeof window.EventSource === 'function';
  if (native && (transport ?? 'eventsource') === 'eventsource') return new window.EventSource(url);
  return new LongPollEventSource(url, abandonAfterMs === undefined ? {} : { abandonAfterMs });
}
