// The wire view: the last 50 lines, newest first; the wording of an event;
// and no DOM work while the panel is closed. `node --test tests/js`.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { streamAttempt } from '../../static/js/transport.js';
import { WIRE_LENGTH, WireLog, duration, eventLine, showWire } from '../../static/js/wire.js';

test('the log keeps the last 50 lines, newest first', () => {
  const log = new WireLog();
  for (let n = 1; n <= 120; n += 1) log.add(`line ${n}`);
  assert.equal(WIRE_LENGTH, 50);
  assert.equal(log.lines.length, 50);
  assert.equal(log.lines[0], 'line 120');
  assert.equal(log.lines.at(-1), 'line 71');
});

test('lines is a copy: a caller cannot change the log', () => {
  const log = new WireLog(3);
  log.add('a');
  log.lines.push('b');
  assert.deepEqual(log.lines, ['a']);
});

test('durations read as people say them', () => {
  assert.equal(duration(850), '850 ms');
  assert.equal(duration(3240), '3.2 s');
  assert.equal(duration(25040), '25.0 s');
});

test('an event shows its id and data, and its type when it is not a message', () => {
  assert.equal(eventLine({ type: 'message', lastEventId: '7', data: '101.25' }), 'id: 7 data: 101.25');
  assert.equal(eventLine({ type: 'reset', lastEventId: 'e:3', data: '3' }), 'event: reset id: e:3 data: 3');
  assert.equal(eventLine({ type: 'heartbeat', lastEventId: '', data: '' }), 'event: heartbeat data: ');
  assert.equal(eventLine({ type: 'heartbeat', lastEventId: '41', data: '' }), 'event: heartbeat data: ');
});

test('long or multi-line data stays one short line', () => {
  const line = eventLine({ type: 'message', lastEventId: '1', data: `one\ntwo\r\n${'x'.repeat(200)}` });
  assert.ok(line.startsWith('id: 1 data: one⏎two⏎xxx'), line);
  assert.ok(line.endsWith('…'));
  assert.ok(line.length < 80, line);
});

// Just enough of the DOM for showWire, counting every node it creates.
function fakePanel() {
  const counts = { created: 0 };
  const list = {
    lines: [],
    get childElementCount() { return this.lines.length; },
    get lastElementChild() { return { remove: () => this.lines.pop() }; },
    prepend(node) { this.lines.unshift(node.textContent); },
    replaceChildren(...nodes) { this.lines = nodes.map((node) => node.textContent); },
  };
  const details = new EventTarget();
  details.open = false;
  details.querySelector = () => list;
  details.toggle = () => {
    details.open = !details.open;
    details.dispatchEvent(new Event('toggle'));
  };
  globalThis.document = {
    createElement: () => {
      counts.created += 1;
      return { textContent: '' };
    },
  };
  return { counts, list, details };
}

function say(connection, line, kind = 'wire') {
  const event = new Event(kind);
  event.detail = line;
  connection.dispatchEvent(event);
}

test('closed, the panel does no DOM work; opened, it draws what is kept, then each record', () => {
  const { counts, list, details } = fakePanel();
  const connection = new EventTarget();
  showWire(details, connection, new WireLog(3));
  for (let n = 1; n <= 10; n += 1) say(connection, `line ${n}`);
  assert.equal(counts.created, 0);
  assert.deepEqual(list.lines, []);

  details.toggle();
  assert.deepEqual(list.lines, ['line 10', 'line 9', 'line 8']);
  say(connection, 'line 11');
  assert.deepEqual(list.lines, ['line 11', 'line 10', 'line 9']);

  details.toggle();
  const created = counts.created;
  say(connection, 'line 12');
  assert.equal(counts.created, created);
  assert.deepEqual(list.lines, []);
});

test('the returned function stops listening', () => {
  const { list, details } = fakePanel();
  const connection = new EventTarget();
  const stop = showWire(details, connection);
  details.toggle();
  say(connection, 'kept');
  stop();
  say(connection, 'not kept');
  assert.deepEqual(list.lines, ['kept']);
});

test('a change of transport is a line; the same again is not', () => {
  const { list, details } = fakePanel();
  const connection = new EventTarget();
  showWire(details, connection);
  details.toggle();
  say(connection, 'eventsource', 'transport');
  say(connection, 'eventsource', 'transport');
  say(connection, 'id: 3 data: p');
  say(connection, 'longpoll', 'transport');
  assert.deepEqual(list.lines, ['⇄ transport: longpoll', 'id: 3 data: p', '⇄ transport: eventsource']);
});

// A native EventSource as transport.js drives it: the listeners it is given,
// and a readyState the test sets before an error.
class FakeEventSource {
  CONNECTING = 0;
  OPEN = 1;
  CLOSED = 2;
  readyState = 0;
  listeners = {};

  constructor(url) {
    this.url = url;
  }

  addEventListener(type, listener) {
    this.listeners[type] = listener;
  }

  close() {}
}

test('a native stream says which id it opens from, and which its own reconnect resumes from', () => {
  const opened = [];
  globalThis.document = { baseURI: 'http://127.0.0.1:8888/stock' };
  globalThis.openEventSource = (url) => {
    opened.push(new FakeEventSource(url));
    return opened.at(-1);
  };
  const attempt = streamAttempt('/ticker', { transport: 'eventsource' })();
  const wire = [];
  attempt.addEventListener('wire', (e) => wire.push(e.detail));

  attempt.open('7');
  const [source] = opened;
  assert.equal(source.url, '/ticker?heartbeat=1&lastEventId=7');
  source.listeners.message({ type: 'message', data: '101.25', lastEventId: '8' });
  source.onerror({}); // CONNECTING: the browser reconnects by itself, with the id it holds
  attempt.close();
  attempt.open('');

  assert.deepEqual(wire, [
    '→ new EventSource /ticker · from id 7',
    '✕ error: EventSource reconnects by itself after its retry: wait, from id 8',
    '→ new EventSource /ticker · no id yet',
  ]);
});
