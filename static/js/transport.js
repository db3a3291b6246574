// One attempt at an event stream, a Connection for KeepOpen (recovery.js):
// a native EventSource, or the polyfill's LongPollEventSource
// (eventsource-fallback.js, a classic script loaded before the modules,
// which defines the global openEventSource).
import { Connection } from './connection.js';

/**
 * `streamAttempt(url, {transport, types})` makes attempts at the stream
 * `url`: each `open(lastEventId)` opens one source resuming there. The id
 * goes in the `lastEventId` query parameter, which the server reads when
 * there is no Last-Event-ID header: a new source has none to send. A native
 * stream asks for heartbeats and says each one as an event, for the
 * watchdog; a poll answered at all says `connected` (each answer shows the
 * server is alive), and one unanswered past `abandonAfterMs` is given up
 * and asked again (LongPollEventSource). On the wire it says what the page
 * can see: the polyfill's every request, but of a native stream only its
 * opening and its errors (the browser hides the requests it reconnects with).
 */
export function streamAttempt(url, { transport, types = ['message'], abandonAfterMs }) {
  return () => new StreamAttempt(url, transport, types, abandonAfterMs);
}

class StreamAttempt extends Connection {
  #source = null;

  constructor(url, transport, types, abandonAfterMs) {
    super();
    this.url = url;
    this.transport = transport;
    this.types = types;
    this.abandonAfterMs = abandonAfterMs;
    this.retryAfter = null;
  }

  open(lastEventId = '') {
    const native = this.transport === 'eventsource';
    const target = new URL(this.url, document.baseURI);
    if (native) target.searchParams.set('heartbeat', '1');
    if (lastEventId !== '') target.searchParams.set('lastEventId', lastEventId);
    let resumeFrom = lastEventId; // the id the source holds: what it reconnects with
    if (native) this.say('wire', `→ new EventSource ${target.pathname} · ${fromId(lastEventId)}`);
    const source = this.#source = openEventSource(target.pathname + target.search, {
      transport: this.transport, abandonAfterMs: this.abandonAfterMs,
    });
    source.onwire = (line) => this.say('wire', line); // the polyfill's requests
    source.onopen = native ? () => this.say('wire', `← open ${target.pathname}`) : () => this.say('status', 'connected');
    for (const type of native ? [...this.types, 'heartbeat'] : this.types) {
      source.addEventListener(type, (event) => {
        if (event.lastEventId) resumeFrom = event.lastEventId;
        this.say('event', { type: event.type, data: event.data, lastEventId: event.lastEventId });
      });
    }
    source.onerror = (event) => {
      // CONNECTING: it retries by itself (a network error). CLOSED: it gave
      // up (a non-200 answer, a wrong type), and KeepOpen decides.
      if (source.readyState !== source.CLOSED) {
        if (native) this.say('wire', `✕ error: EventSource reconnects by itself after its retry: wait, ${fromId(resumeFrom)}`);
        this.say('status', 'connecting');
        return;
      }
      this.retryAfter = event.retryAfter ?? null;
      if (native) this.say('wire', '✕ closed: an answer EventSource cannot use (a status other than 200, or another type)');
      this.say('status', 'closed');
    };
  }

  close() {
    this.#source?.close();
    this.#source = null;
  }
}

// The id a native stream resumes from.
function fromId(lastEventId) {
  return lastEventId === '' ? 'no id yet' : `from id ${lastEventId}`;
}
