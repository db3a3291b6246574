// static/js/tabs.js: one connection for many tabs, every event once in
// every tab, with Web Locks and a BroadcastChannel faked in one process
// (tests/js/fakes.mjs), and a stream of numbered events of the test's own.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Connection, listen } from '../../static/js/connection.js';
import { electByLock, idOrder, notAfter, shareConnection, showOnce } from '../../static/js/tabs.js';
import { FakeBus, FakeLocks, FreezableLocks, until } from './fakes.mjs';

// --- Every event once, by id ------------------------------------------------

test('ids: E:N and K are ordered within their era; others are not comparable', () => {
  assert.deepEqual(idOrder('a1:7'), { era: 'a1', n: 7 });
  assert.deepEqual(idOrder('12'), { era: '', n: 12 });
  assert.equal(idOrder(''), null);
  assert.equal(idOrder('x:'), null);
  assert.equal(notAfter('E:3', 'E:3'), true);
  assert.equal(notAfter('E:2', 'E:3'), true);
  assert.equal(notAfter('E:4', 'E:3'), false);
  assert.equal(notAfter('F:1', 'E:3'), false); // another epoch starts afresh
  assert.equal(notAfter('', 'E:3'), false); // no id: nothing to compare
});

test('showOnce skips what it has shown, unless the connection says it restarted', () => {
  const shown = [];
  const offer = showOnce((event) => shown.push(event.data));
  const ev = (data, lastEventId) => ({ type: 'message', data, lastEventId });
  offer(ev('a', '1'));
  offer(ev('b', '2'));
  offer(ev('a again', '1'));
  offer(ev('b again', '2'));
  offer(ev('after a restart', '1'), true);
  offer(ev('c', '2'));
  offer(ev('no id', ''));
  offer(ev('another epoch', 'F:1'));
  assert.deepEqual(shown, ['a', 'b', 'after a restart', 'c', 'no id', 'another epoch']);
});

// --- Sharing --------------------------------------------------------------------

/** The server's side of a stream of numbered events: event N has id N. */
class Numbers {
  history = [];
  streams = new Set();
  opened = []; // the id each stream was opened from

  publish(data) {
    this.history.push(data);
    for (const stream of this.streams) stream.send();
  }

  /** A restarted state stream: it counts from 1 again, and its streams go on from there. */
  restart() {
    this.history = [];
    for (const stream of this.streams) stream.sent = 0;
  }
}

/** A Connection on Numbers: from the id it is opened with, then each new one. */
class NumbersStream extends Connection {
  constructor(server) {
    super();
    this.server = server;
  }

  open(lastEventId = '') {
    this.server.opened.push(lastEventId);
    const from = Number(lastEventId);
    this.sent = /^[0-9]+$/.test(lastEventId) && from <= this.server.history.length ? from : 0;
    this.server.streams.add(this);
    this.say('transport', 'eventsource');
    this.say('wire', `numbers from ${lastEventId || 'the first'}`);
    this.say('status', 'connected');
    this.send();
  }

  send() {
    while (this.sent < this.server.history.length) {
      this.sent += 1;
      this.say('event', { type: 'message', data: this.server.history[this.sent - 1], lastEventId: String(this.sent) });
      this.say('wire', `id: ${this.sent}`);
    }
  }

  close() {
    this.server.streams.delete(this);
  }
}

/**
 * `count` tabs sharing one Numbers stream; each records its role and what
 * it showed. Each tab's `locks` (FreezableLocks) and `lifecycle` (what
 * fires 'freeze' and 'resume') are there for a test that freezes it.
 */
async function openTabs(server, count, { delayMs = 0, byeMs = 250 } = {}) {
  const locks = new FakeLocks();
  const bus = new FakeBus({ delayMs });
  const tabs = [];
  for (let i = 0; i < count; i += 1) {
    const tab = { role: null, status: null, shown: [], wire: [] };
    tab.locks = new FreezableLocks(locks);
    tab.lifecycle = new EventTarget();
    tab.connection = shareConnection('numbers', new NumbersStream(server), {
      elect: electByLock(tab.locks), channel: bus.channel, lifecycle: tab.lifecycle, byeMs,
    });
    listen(tab.connection, {
      role: (role) => { tab.role = role; },
      status: (status) => { tab.status = status; },
      event: (event) => tab.shown.push(event.data),
      wire: (record) => tab.wire.push(record),
    });
    tab.connection.open();
    tabs.push(tab);
    await until(() => tab.role !== null, () => `tab ${i} has no role`);
  }
  return tabs;
}

const leaderOf = (tabs) => tabs.filter((tab) => tab.role === 'leader');

async function allShow(tabs, expected, ms = 2000) {
  const listed = () => JSON.stringify(tabs.map((tab) => tab.shown));
  await until(() => tabs.every((tab) => JSON.stringify(tab.shown) === JSON.stringify(expected)),
    () => `the tabs do not all show ${JSON.stringify(expected)}: ${listed()}`, ms);
}

test('one leader holds the stream and every tab shows each event once', async () => {
  const server = new Numbers();
  const tabs = await openTabs(server, 3);
  assert.deepEqual(tabs.map((tab) => tab.role), ['leader', 'follower', 'follower']);
  assert.equal(server.streams.size, 1);
  server.publish('a');
  server.publish('b');
  await allShow(tabs, ['a', 'b']);
  await until(() => tabs.every((tab) => tab.status === 'connected'), () => 'not all connected');
  // What the leader's connection did on the wire: its own in the leader,
  // relayed in the others (what it did once they follow).
  assert.ok(tabs[0].wire.includes('numbers from the first') && tabs[0].wire.includes('id: 2'), tabs[0].wire);
  for (const follower of tabs.slice(1)) {
    assert.ok(follower.wire.includes('relayed: id: 1') && follower.wire.includes('relayed: id: 2'), follower.wire);
  }
  tabs.forEach((tab) => tab.connection.close());
  assert.equal(server.streams.size, 0);
});

test('a new leader that resumes before the old one\'s last relay still shows nothing twice', async () => {
  // The channel is slower than the new leader waits for the old one's
  // 'bye': it resumes from an earlier id than the followers have seen, the
  // stream replays the last event, and the followers must skip it.
  const server = new Numbers();
  const tabs = await openTabs(server, 3, { delayMs: 100, byeMs: 25 });
  server.publish('before');
  await allShow(tabs, ['before']);

  server.publish('the last before hand-over');
  const [old] = leaderOf(tabs);
  old.connection.close(); // its relay still on its way
  const others = tabs.filter((tab) => tab !== old);
  await until(() => leaderOf(others).length === 1, () => 'no new leader');
  assert.deepEqual(server.opened, ['', '1'], 'the new leader resumed after "before" only');

  // Any replay relayed comes before this one on the channel.
  server.publish('after');
  await allShow(others, ['before', 'the last before hand-over', 'after']);
  assert.equal(server.streams.size, 1);
  const [follower] = others.filter((tab) => tab.role === 'follower');
  assert.ok(follower.wire.includes('relayed: numbers from 1'), follower.wire);
});

test('a restarted state stream counts from 1 again, and every tab shows it', async () => {
  const server = new Numbers();
  const tabs = await openTabs(server, 2);
  for (const price of ['10.00', '10.01', '10.02']) server.publish(price);
  await allShow(tabs, ['10.00', '10.01', '10.02']);

  server.restart();
  server.publish('20.00'); // id 1 again
  server.publish('20.01');
  await allShow(tabs, ['10.00', '10.01', '10.02', '20.00', '20.01']);
});

test('hand-overs in turn: each resumes where this browser stood', async () => {
  const server = new Numbers();
  const tabs = await openTabs(server, 4, { delayMs: 5 });
  const expected = [];
  while (tabs.length > 1) {
    expected.push(`turn ${tabs.length}`);
    server.publish(expected.at(-1));
    await allShow(tabs, expected);
    const [old] = leaderOf(tabs);
    old.connection.close();
    tabs.splice(tabs.indexOf(old), 1);
    expected.push(`while nobody leads ${tabs.length}`);
    server.publish(expected.at(-1));
    await until(() => leaderOf(tabs).length === 1, () => 'no new leader');
    await allShow(tabs, expected);
    assert.equal(server.streams.size, 1);
  }
});

test('a follower frozen while queued for the lock is never granted it: another tab leads at once', async () => {
  const server = new Numbers();
  const tabs = await openTabs(server, 3);
  const [leader, frozen, active] = tabs;
  assert.deepEqual(tabs.map((tab) => tab.role), ['leader', 'follower', 'follower']);
  // A page being frozen hears 'freeze', then runs nothing until it resumes.
  frozen.lifecycle.dispatchEvent(new Event('freeze'));
  frozen.locks.freeze();
  leader.connection.close();
  await until(() => active.role === 'leader', () => `the active tab is a ${active.role}`, 1000);
  assert.equal(frozen.role, 'follower');
  assert.equal(server.streams.size, 1);

  // Back, it follows the new leader, and shows what it relays.
  frozen.locks.thaw();
  frozen.lifecycle.dispatchEvent(new Event('resume'));
  server.publish('after the freeze');
  await allShow([frozen, active], ['after the freeze']);
  assert.deepEqual([frozen.role, active.role], ['follower', 'leader']);
  assert.equal(server.streams.size, 1);
  tabs.forEach((tab) => tab.connection.close());
});
