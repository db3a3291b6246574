// static/js/chat-order.js: what the chat list draws for each event, so that
// every message shows once and in order, across replays, resets and epochs.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ChatOrder, chatMessage, parseChatId } from '../../static/js/chat-order.js';

const reset = (epoch, first) => ({ type: 'reset', data: String(first), lastEventId: `${epoch}:${first}` });

test('ids: E:N, with or without an epoch', () => {
  assert.deepEqual(parseChatId('a1b2:7'), ['a1b2', 7]);
  assert.deepEqual(parseChatId('7'), ['', 7]);
  assert.deepEqual(chatMessage('a1b2', 6, 'hi'), { type: 'message', data: 'hi', lastEventId: 'a1b2:7' });
});

test('messages in order are drawn, each once', () => {
  const order = new ChatOrder();
  assert.deepEqual(order.take(chatMessage('E', 0, 'a')), [['message', 0, 'a']]);
  assert.deepEqual(order.take(chatMessage('E', 1, 'b')), [['message', 1, 'b']]);
  assert.equal(order.lastEventId, 'E:2');
});

test('a replay (a hand-over, a catch-up overlapping the stream) draws nothing', () => {
  const order = new ChatOrder();
  for (const n of [0, 1, 2]) order.take(chatMessage('E', n, `m${n}`));
  assert.deepEqual(order.take(chatMessage('E', 1, 'm1')), []);
  assert.deepEqual(order.take(chatMessage('E', 2, 'm2')), []);
  assert.deepEqual(order.take(chatMessage('E', 3, 'm3')), [['message', 3, 'm3']]);
});

test('a reset starts the list again from its first, in the same epoch or another', () => {
  const order = new ChatOrder();
  order.take(chatMessage('E', 0, 'old'));
  assert.deepEqual(order.take(reset('F', 0)), [['reset', 0]]);
  assert.deepEqual(order.take(chatMessage('F', 0, 'new')), [['message', 0, 'new']]);
  // Aged out: the history now starts at 40.
  assert.deepEqual(order.take(reset('F', 40)), [['reset', 40]]);
  assert.deepEqual(order.take(chatMessage('F', 40, 'x')), [['message', 40, 'x']]);
  assert.equal(order.lastEventId, 'F:41');
});

test('a message of another epoch without a reset starts the list again too', () => {
  const order = new ChatOrder();
  order.take(chatMessage('E', 5, 'before'));
  assert.deepEqual(order.take(chatMessage('F', 0, 'after')), [['reset', 0], ['message', 0, 'after']]);
});

test('before the first message there is no id to resume by', () => {
  assert.equal(new ChatOrder().lastEventId, '');
});
