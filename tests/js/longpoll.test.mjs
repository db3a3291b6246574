// LongPollEventSource (the polyfill, loaded as the classic script it is)
// against a fetch that answers only when the test says: a poll left
// unanswered past its limit is given up and asked again by the same id.
import assert from 'node:assert/strict';
import { test } from 'node:test';

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

function open(options) {
  const clock = new FakeClock();
  const network = new FakeFetch();
  const window = loadPolyfill({
    fetch: network.fetch,
    setTimeout: (callback, ms) => clock.setTimeout(callback, ms),
    clearTimeout: (timer) => clock.clearTimeout(timer),
  });
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
