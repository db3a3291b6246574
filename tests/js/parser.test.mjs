// The polyfill's event-stream parser by the WHATWG "Event stream
// interpretation" rules, each case beside the step it checks.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { loadPolyfill, plain } from './fakes.mjs';

const { parseEventStream } = loadPolyfill();
const parse = (text, state) => plain(parseEventStream(text, state));
const message = (data, lastEventId = '') => ({ type: 'message', data, lastEventId });

test('a blank line dispatches the event; data lines join with LF', () => {
  assert.deepEqual(parse('data: a\ndata: b\n\ndata: c\n\n').events, [message('a\nb'), message('c')]);
});

test('CRLF, lone CR and lone LF all end a line', () => {
  assert.deepEqual(parse('data: a\r\n\r\ndata: b\r\rdata: c\n\n').events, [message('a'), message('b'), message('c')]);
});

test('one leading BOM is dropped, a second is data', () => {
  assert.deepEqual(parse('\uFEFFdata: a\n\n').events, [message('a')]);
  assert.deepEqual(parse('\uFEFF\uFEFFdata: a\n\n').events, []); // the field is named "\uFEFFdata"
});

test('comments and unknown fields are ignored; one space after the colon goes', () => {
  assert.deepEqual(parse(': keep-alive\nfoo: bar\ndata:  two spaces\n\n').events, [message(' two spaces')]);
});

test('a line without a colon is a field with an empty value', () => {
  // The buffer is "\n", not empty, so it dispatches; its one LF removed, the data is "".
  assert.deepEqual(parse('data\n\n').events, [message('')]);
  assert.deepEqual(parse('data\ndata\n\n').events, [message('\n')]);
});

test('event names the type; it does not carry over to the next event', () => {
  assert.deepEqual(parse('event: reset\ndata: 3\n\ndata: x\n\n').events,
    [{ type: 'reset', data: '3', lastEventId: '' }, message('x')]);
});

test('an id persists across events and across bodies; an empty id clears it', () => {
  const first = parse('id: 7\ndata: a\n\ndata: b\n\n');
  assert.deepEqual(first.events, [message('a', '7'), message('b', '7')]);
  assert.equal(first.lastEventId, '7');
  assert.deepEqual(parse('data: c\n\n', first).events, [message('c', '7')]);
  assert.deepEqual(parse('id\ndata: d\n\n', first).events, [message('d', '')]);
});

test('an id with NUL is ignored', () => {
  assert.equal(parse('id: 1\u00002\ndata: a\n\n', { lastEventId: '5' }).events[0].lastEventId, '5');
});

test('an id without data still moves the last event id', () => {
  const result = parse('id: 9\n\n');
  assert.deepEqual([result.events, result.lastEventId], [[], '9']);
});

test('retry takes digits only', () => {
  assert.equal(parse('retry: 3500\n\n').reconnectionTime, 3500);
  assert.equal(parse('retry: 3.5\n\n', { reconnectionTime: 2000 }).reconnectionTime, 2000);
  assert.equal(parse('retry: soon\n\n').reconnectionTime, 2000);
});

test('an unfinished last event is dropped, and so is an unfinished line', () => {
  assert.deepEqual(parse('data: a\n\ndata: b\n').events, [message('a')]);
  assert.deepEqual(parse('data: a\n\ndata: b').events, [message('a')]);
});
