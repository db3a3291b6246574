// The wire view's pure part: the last 50 lines, newest first, and how each
// record reads. `node --test tests/js` (make test runs it).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { WIRE_LENGTH, WireLog, describe, duration, wireView } from '../../static/js/wire.js';

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
  assert.equal(duration(3200), '3.2 s');
  assert.equal(duration(25040), '25.0 s');
});

test('a request says the cursor or Last-Event-ID it carried', () => {
  assert.equal(describe({ what: 'request', url: '/chat/get/5', cursor: 5 }), '→ GET /chat/get/5 · cursor 5');
  assert.equal(
    describe({ what: 'request', url: '/ticker', lastEventId: '41' }),
    '→ GET /ticker · Last-Event-ID: 41',
  );
  assert.equal(describe({ what: 'request', url: '/ticker', lastEventId: '' }), '→ GET /ticker · Last-Event-ID: (none)');
});

test('an answer says its status, and how long it was held when it was', () => {
  assert.equal(describe({ what: 'answer', url: '/chat/get/5', status: 200, ms: 3240 }), '← 200 /chat/get/5 · held 3.2 s');
  assert.equal(describe({ what: 'answer', url: '/chat/since/0', status: 200, ms: 12 }), '← 200 /chat/since/0');
  assert.equal(describe({ what: 'answer', url: '/chat/get/5', status: 204, ms: 5003 }), '← 204 /chat/get/5 · held 5.0 s');
});

test('an event shows its id and data, and its type when it is not a message', () => {
  assert.equal(describe({ what: 'event', type: 'message', id: '7', data: '101.25' }), 'id: 7 data: 101.25');
  assert.equal(describe({ what: 'event', type: 'reset', id: 'e:3', data: '3' }), 'event: reset id: e:3 data: 3');
  assert.equal(describe({ what: 'event', type: 'heartbeat', data: '' }), 'event: heartbeat data: ');
});

test('long or multi-line data stays one short line', () => {
  const line = describe({ what: 'event', type: 'message', id: '1', data: `one\ntwo\r\n${'x'.repeat(200)}` });
  assert.ok(line.startsWith('id: 1 data: one⏎two⏎xxx'), line);
  assert.ok(line.endsWith('…'));
  assert.ok(line.length < 80, line);
});

test('waits say why, switches and hand-overs say what changed', () => {
  assert.equal(describe({ what: 'wait', ms: 2734, why: 'retry: 2734' }), '… wait 2.7 s (retry: 2734)');
  assert.equal(describe({ what: 'wait', ms: 5400, why: 'Retry-After: 5' }), '… wait 5.4 s (Retry-After: 5)');
  assert.equal(describe({ what: 'switch', to: 'longpoll', why: 'buffered twice' }), '⇄ switched to longpoll: buffered twice');
  assert.equal(
    describe({ what: 'handover', role: 'leader', lastEventId: '12' }),
    '⇄ this tab is now the leader, resuming from id 12',
  );
});

test("a follower's records are marked as the leader's", () => {
  assert.equal(describe({ what: 'event', type: 'message', id: '8', data: '99.00', relayed: true }), 'relayed · id: 8 data: 99.00');
});

test('a native EventSource shows what the page can see of it', () => {
  assert.equal(describe({ what: 'open', url: '/ticker', lastEventId: '41' }), '→ new EventSource(/ticker) · resumes from id 41');
  assert.equal(describe({ what: 'opened', url: '/ticker' }), '← open /ticker');
  assert.equal(describe({ what: 'failure', url: '/ticker', error: 'error, reconnecting' }), '✕ /ticker: error, reconnecting');
});

// Just enough of the DOM for wireView: counts every node it creates.
function fakePage() {
  const page = { created: 0 };
  const list = {
    children: [],
    get childElementCount() { return this.children.length; },
    get lastElementChild() {
      const last = this.children.at(-1);
      return { remove: () => this.children.pop(), textContent: last };
    },
    prepend(node) { this.children.unshift(node.textContent); },
    replaceChildren(...nodes) { this.children = nodes.map((node) => node.textContent); },
  };
  const details = {
    open: false,
    listeners: [],
    querySelector: () => list,
    addEventListener(type, listener) { this.listeners.push(listener); },
    toggle() { this.open = !this.open; this.listeners.forEach((listener) => listener()); },
  };
  globalThis.document = {
    createElement: () => {
      page.created += 1;
      return { textContent: '' };
    },
  };
  return { page, list, details };
}

test('closed, the panel does no DOM work; opened, it draws what is kept, then each record', () => {
  const { page, list, details } = fakePage();
  const show = wireView(details, new WireLog(3));
  for (let n = 1; n <= 10; n += 1) show({ what: 'event', type: 'message', id: String(n), data: 'p' });
  assert.equal(page.created, 0);
  assert.deepEqual(list.children, []);

  details.toggle();
  assert.deepEqual(list.children, ['id: 10 data: p', 'id: 9 data: p', 'id: 8 data: p']);
  show({ what: 'event', type: 'message', id: '11', data: 'p' });
  assert.deepEqual(list.children, ['id: 11 data: p', 'id: 10 data: p', 'id: 9 data: p']);

  details.toggle();
  const created = page.created;
  show({ what: 'event', type: 'message', id: '12', data: 'p' });
  assert.equal(page.created, created);
  assert.deepEqual(list.children, []);
});
