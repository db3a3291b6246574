// LongPollEventSource (the polyfill, loaded as the classic script it is)
// against a fetch that answers only when the test says: a poll left
// unanswered past its limit is given up and asked again by the same id; a
// refusal says when to come back, and the page waits that long.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { KeepOpen } from '../../static/js/recovery.js';
import { streamAttempt } from '../../static/js/transport.js';
import { FakeClock, loadPolyfill } from './fakes.mjs';

/** fetch() as the test plays it: each request waits for answer() or its abort. */
class FakeFetch {
  requests = [];

  fetch = (url, { headers = {}, signal } = {}) => new Promise((resolve, reject) => {
    const request = { url, headers, aborted: false, resolve, reject };
    this.requests.push(request);
    signal?.addEventListener('abort', () => {
      request.aborted = true;
      reject(Object.assign(new Error('aborted'), { name: 'AbortError' }));
    });
  });

  /** Refuses the latest request: `status`, with `headers` and a text body. */
  refuse(status, headers = {}) {
    this.requests.at(-1).resolve({
      status,
      url: this.requests.at(-1).url,
      headers: new Headers({ 'Content-Type': 'text/plain; charset=UTF-8', ...headers }),
      arrayBuffer: async () => new ArrayBuffer(0),
    });
  }

  /** Answers the latest request with an event-stream body. */
  answer(text) {
    this.requests.at(-1).resolve({
      status: 200,
      url: this.requests.at(-1).url,
      headers: new Headers({ 'Content-Type': 'text/event-stream; charset=utf-8' }),
      arrayBuffer: async () => new TextEncoder().encode(text).buffer,
    });
  }
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

/** The polyfill's global, its fetch and its timers the test's. */
function polyfill() {
  const clock = new FakeClock();
  const network = new FakeFetch();
  const window = loadPolyfill({
    fetch: network.fetch,
    setTimeout: (callback, ms) => clock.setTimeout(callback, ms),
    clearTimeout: (timer) => clock.clearTimeout(timer),
  });
  return { clock, network, window };
}

function open(options) {
  const { clock, network, window } = polyfill();
  const source = new window.LongPollEventSource('/ticker', options);
  const seen = [];
  for (const type of ['open', 'message', 'error']) {
    source.addEventListener(type, (event) => seen.push([type, event.data ?? null, source.readyState]));
  }
  return { clock, network, source, seen };
}

test('a poll unanswered past its limit is given up, as a network error, and asked again by its id', async () => {
  const { clock, network, source, seen } = open({ abandonAfterMs: 10000 });
  await settle(); // it asks once its handlers are set, as a native one does
  network.answer('retry: 500\nid: 7\ndata: 10.00\n\n');
  await settle();
  assert.deepEqual(seen, [['open', null, 1], ['message', '10.00', 1]]);
  assert.equal(network.requests.length, 2); // asked again at once: this one the server holds
  assert.deepEqual(clock.pending(), [10000]);

  assert.equal(clock.fire(), 10000); // the connection went silent: nothing came back
  await settle();
  assert.equal(network.requests[1].aborted, true);
  assert.deepEqual(seen.at(-1), ['error', null, 0]); // CONNECTING: it will try again
  assert.deepEqual(clock.pending(), [500]); // after the reconnection time

  clock.fire();
  assert.equal(network.requests.length, 3);
  assert.equal(network.requests[2].headers['Last-Event-ID'], '7');
  network.answer('id: 8\ndata: 10.01\n\n');
  await settle();
  assert.deepEqual(seen.slice(-2), [['open', null, 1], ['message', '10.01', 1]]);
  source.close();
});

test('closed before its first request, it makes none', async () => {
  const { network, source } = open();
  source.close();
  await settle();
  assert.equal(network.requests.length, 0);
});

test('an answered poll cancels its limit; close() leaves nothing pending', async () => {
  const { clock, network, source } = open({ abandonAfterMs: 10000 });
  await settle();
  network.answer('data: a\n\n');
  await settle();
  assert.deepEqual(clock.pending(), [10000]); // the next poll's only
  source.close();
  await settle();
  assert.deepEqual(clock.pending(), []);
});

test('without a hint the limit is 30 s: the default hold of 25 s and 5 s for the network', async () => {
  const { clock, source } = open();
  await settle();
  assert.deepEqual(clock.pending(), [30000]);
  source.close();
});

test('a refusal closes it for good, and its error says the status and the Retry-After', async () => {
  const { clock, network, source } = open();
  const errors = [];
  source.addEventListener('error', (event) => errors.push([event.status, event.retryAfter, source.readyState]));
  await settle(); // it asks once its handlers are set
  network.refuse(503, { 'Retry-After': '7' });
  await settle();
  assert.deepEqual(errors, [[503, '7', 2]]); // CLOSED: the page decides when to ask again
  assert.equal(network.requests.length, 1);
  assert.deepEqual(clock.pending(), []);
});

test('a page refused with Retry-After: 7 over the fallback waits 7 s before it asks again', async () => {
  const { clock, network, window } = polyfill();
  // What transport.js finds in a page: the document, and the polyfill's global.
  globalThis.document = window.document;
  globalThis.openEventSource = window.openEventSource;
  try {
    const page = new KeepOpen({
      attempts: { longpoll: streamAttempt('/chat/events', { transport: 'longpoll' }) },
      transport: 'longpoll', pinned: true, keepalive: 15, clock, random: () => 0,
      memory: { chosen: () => false, remember: () => {} }, probe: async () => true,
    });
    page.open('E:3');
    await settle();
    assert.equal(network.requests.length, 1);
    network.refuse(503, { 'Retry-After': '7' });
    await settle();
    assert.deepEqual(clock.pending(), [7000]); // the backoff's own draw (0 here) comes on top
    assert.equal(network.requests.length, 1);
    assert.equal(clock.fire(), 7000);
    await settle();
    assert.equal(network.requests.length, 2);
    assert.equal(new URL(network.requests[1].url).searchParams.get('lastEventId'), 'E:3');
    page.close();
  } finally {
    delete globalThis.document;
    delete globalThis.openEventSource;
  }
});

test('on the wire, each request names the Last-Event-ID it sent, the first one too', async () => {
  const { network, source } = open({ abandonAfterMs: 10000 });
  const wire = [];
  source.onwire = (line) => wire.push(line); // set after construction, as transport.js sets it
  await settle();
  network.answer('id: 7\ndata: 10.00\n\n');
  await settle();
  assert.equal(network.requests[1].headers['Last-Event-ID'], '7');
  assert.deepEqual(wire.filter((line) => line.startsWith('→')), [
    '→ GET /ticker · no Last-Event-ID', '→ GET /ticker · Last-Event-ID: 7']);
  assert.match(wire[1], /^← 200 \/ticker · held \d+ ms$/);
  source.close();
});
