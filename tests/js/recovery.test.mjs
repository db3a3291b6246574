// static/js/recovery.js: the backoff schedule, Retry-After, the watchdog,
// the fallback decision, and KeepOpen putting them together against fake
// attempts, a fake clock and a fake probe.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Connection, listen } from '../../static/js/connection.js';
import { keepStream } from '../../static/js/page.js';
import { Backoff, FallbackDecision, KeepOpen, retryAfterMs, Watchdog, watchdogTimes } from '../../static/js/recovery.js';
import { electByLock } from '../../static/js/tabs.js';
import { FakeBus, FakeClock, FakeLocks, until } from './fakes.mjs';

const KEEPALIVE = 15; // seconds: the watchdog waits 5 s for a first heartbeat, 37.5 s for the next
const BUFFERED_MS = 5000;
const SILENT_MS = 37500;

// --- Backoff ------------------------------------------------------------------

/** The waits a Backoff draws with `values` as its random source; 'reset' resets it. */
function schedule(values, retryAfters) {
  const backoff = new Backoff({ random: () => values.shift() });
  return retryAfters.map((retryAfter) => (retryAfter === 'reset' ? (backoff.reset(), null) : backoff.next(retryAfter)));
}

// mulberry32, a small seeded random source.
function mulberry32(seed) {
  return () => {
    seed = (seed + 0x6D2B79F5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('the window doubles from one second to thirty', () => {
  // With the random source at its middle, each wait is half its window.
  assert.deepEqual(schedule(Array(8).fill(0.5), Array(8).fill(0)), [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]);
});

test('full jitter draws from zero to the window', () => {
  const waits = schedule([0, 0.999999, 0, 0.999999], [0, 0, 0, 0]);
  [0, 2000, 0, 8000].forEach((expected, i) => assert.ok(Math.abs(waits[i] - expected) < 0.1, `${waits}`));
});

test('a seeded schedule is the random source times the window, spread out', () => {
  for (const seed of [1, 42, 2024]) {
    const backoff = new Backoff({ random: mulberry32(seed) });
    const again = mulberry32(seed);
    const waits = Array.from({ length: 10 }, (_, n) => [backoff.next(), again() * Math.min(30000, 1000 * 2 ** n)]);
    for (const [wait, expected] of waits) assert.ok(Math.abs(wait - expected) < 1e-6);
    assert.equal(new Set(waits.map(([wait]) => Math.round(wait))).size, 10);
  }
});

test('reset starts again from the first window', () => {
  assert.deepEqual(schedule(Array(5).fill(0.5), [0, 0, 0, 'reset', 0]), [500, 1000, 2000, null, 500]);
});

test('a Retry-After is waited out and the jitter comes on top', () => {
  assert.deepEqual(schedule([0.5, 0.5], [5000, 5000]), [5500, 6000]);
});

test('Retry-After: seconds or an HTTP date, cut to five minutes, else 0', () => {
  const cases = [
    [null, 0], ['5', 5000], [' 120 ', 120000], ['-3', 0], ['soon', 0], ['1.5', 0],
    ['86400', 300000], // cut to five minutes
    ['Thu, 01 Jan 1970 00:00:10 GMT', 4000], // an HTTP date, 4 s after `now`
    ['Thu, 01 Jan 1970 00:00:01 GMT', 0], // already past
  ];
  for (const [header, expected] of cases) assert.equal(retryAfterMs(header, 6000), expected, header);
});

// --- Watchdog and FallbackDecision ------------------------------------------------

test('the watchdog times follow the keep-alive', () => {
  for (const [keepalive, bufferedMs, silentMs] of [[15, 5000, 37500], [2, 2000, 5000], [1, 2000, 2500], [60, 5000, 150000]]) {
    assert.deepEqual(watchdogTimes(keepalive), { bufferedMs, silentMs });
  }
});

test('the watchdog: late before the first sign of life, silent after one', () => {
  const clock = new FakeClock();
  const quiet = [];
  const watchdog = new Watchdog({ keepalive: KEEPALIVE, clock, quiet: (why) => quiet.push(why) });
  watchdog.start();
  assert.deepEqual([clock.fire(), quiet], [BUFFERED_MS, ['late']]);

  watchdog.start();
  watchdog.alive();
  assert.deepEqual(clock.pending(), [SILENT_MS]); // a sign of life replaces the first limit
  watchdog.alive();
  assert.deepEqual(clock.pending(), [SILENT_MS]);
  assert.deepEqual([clock.fire(), quiet], [SILENT_MS, ['late', 'silent']]);

  watchdog.start();
  watchdog.stop();
  assert.deepEqual(clock.pending(), []);
});

test('the fallback: buffered twice in a row switches, live in between starts again, pinned never', () => {
  let remembered = 0;
  const memory = { chosen: () => remembered > 0, remember: () => { remembered += 1; } };
  const decision = new FallbackDecision({ memory });
  assert.equal(decision.chosenEarlier, false);
  assert.equal(decision.buffered(), false);
  decision.live();
  assert.equal(decision.buffered(), false);
  assert.equal(decision.buffered(), true);
  assert.equal(remembered, 1);
  assert.equal(decision.chosenEarlier, true);

  const pinned = new FallbackDecision({ pinned: true, memory });
  assert.deepEqual([pinned.buffered(), pinned.buffered(), pinned.buffered()], [false, false, false]);
  assert.equal(pinned.chosenEarlier, false);
});

// --- KeepOpen ---------------------------------------------------------------------

/** An attempt the test plays: it says what a transport would. */
class FakeAttempt extends Connection {
  constructor(transport) {
    super();
    this.transport = transport;
    this.closed = false;
    this.retryAfter = null;
  }

  open(lastEventId) {
    this.lastEventId = lastEventId;
  }

  close() {
    this.closed = true;
  }
}

/** KeepOpen with fake attempts, clock, random source and probe. */
class Rig {
  constructor({ random = [0.5], pinned = false, lastEventId = '', memory = sessionLike() } = {}) {
    this.clock = new FakeClock();
    this.attempts = [];
    this.said = [];
    this.probes = [];
    this.memory = memory;
    const values = random.slice();
    const attempt = (transport) => () => {
      const made = new FakeAttempt(transport);
      this.attempts.push(made);
      return made;
    };
    this.connection = new KeepOpen({
      attempts: { eventsource: attempt('eventsource'), longpoll: attempt('longpoll') },
      transport: 'eventsource', pinned, keepalive: KEEPALIVE, memory, clock: this.clock,
      random: () => (values.length > 1 ? values.shift() : values[0]),
      probe: () => new Promise((resolve) => this.probes.push(resolve)),
    });
    for (const kind of ['event', 'status', 'transport', 'notice']) {
      this.connection.addEventListener(kind, (e) => this.said.push([kind, kind === 'event' ? e.detail.data : e.detail]));
    }
    this.connection.open(lastEventId);
  }

  /** The latest attempt says `kind` `value` (a status 'closed' with `retryAfter`). */
  say(kind, value, retryAfter = null) {
    const attempt = this.attempts.at(-1);
    attempt.retryAfter = retryAfter;
    attempt.say(kind, value);
  }

  deliver(data, lastEventId) {
    this.say('event', { type: 'message', data, lastEventId });
  }

  heartbeat() {
    this.say('event', { type: 'heartbeat', data: '', lastEventId: '' });
  }

  /** (transport, lastEventId, closed) of each attempt so far. */
  tried() {
    return this.attempts.map((a) => [a.transport, a.lastEventId, a.closed]);
  }

  /** What the connection said since the last call. */
  heard() {
    return this.said.splice(0);
  }

  /** Answers the oldest probe, and lets KeepOpen act on it. */
  async answer(answered) {
    this.probes.shift()(answered);
    await new Promise((resolve) => setImmediate(resolve));
  }

  /** The latest attempt shows nothing in time and the probe finds the server answering. */
  async foundBuffered() {
    assert.deepEqual(this.clock.pending(), [BUFFERED_MS]);
    assert.equal(this.clock.fire(), BUFFERED_MS);
    assert.equal(this.probes.length, 1);
    await this.answer(true);
  }
}

function sessionLike() {
  let chosen = false;
  return { chosen: () => chosen, remember: () => { chosen = true; } };
}

test('a failed transport is opened again after the backoff, by its id', () => {
  const rig = new Rig();
  assert.deepEqual(rig.tried(), [['eventsource', '', false]]);
  assert.deepEqual(rig.heard(), [['transport', 'eventsource'], ['status', 'connecting']]);

  rig.deliver('a', 'E:1');
  assert.deepEqual(rig.heard(), [['status', 'connected'], ['event', 'a']]);

  rig.say('status', 'closed'); // a 502 from a proxy, say
  assert.deepEqual(rig.heard(), [['status', 'connecting']]);
  assert.deepEqual(rig.tried(), [['eventsource', '', true]]);
  assert.deepEqual(rig.clock.pending(), [500]); // the first window, 1 s, times 0.5

  assert.equal(rig.clock.fire(), 500);
  assert.deepEqual(rig.tried().at(-1), ['eventsource', 'E:1', false]);
  assert.deepEqual(rig.heard(), [['status', 'connecting']]);

  // Failing again, without having delivered: the window doubles, on top of a Retry-After.
  rig.say('status', 'closed', '3');
  assert.deepEqual(rig.clock.pending(), [3000 + 1000]);
  rig.clock.fire();
  rig.say('status', 'closed');
  assert.deepEqual(rig.clock.pending(), [2000]);
  rig.clock.fire();

  // Live again (a heartbeat): the schedule starts again.
  rig.heartbeat();
  rig.say('status', 'closed');
  assert.deepEqual(rig.clock.pending(), [500]);
  rig.clock.fire();
  assert.deepEqual(rig.tried().map((a) => a[1]), ['', 'E:1', 'E:1', 'E:1', 'E:1']);
  assert.ok(!rig.heard().some(([, value]) => value === 'closed'), 'a page never says closed by itself');
});

test('the backoff caps at thirty seconds', () => {
  const rig = new Rig({ random: [0.999999] });
  const waits = [];
  for (let i = 0; i < 8; i += 1) {
    rig.say('status', 'closed');
    waits.push(Math.round(rig.clock.fire()));
  }
  assert.deepEqual(waits, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
});

test('it opens by the id it is given (a new leader resuming)', () => {
  assert.deepEqual(new Rig({ lastEventId: 'E:41' }).tried(), [['eventsource', 'E:41', false]]);
});

test('a transport retrying by itself shows connecting and keeps its attempt', () => {
  const rig = new Rig();
  rig.heartbeat();
  rig.heard();
  rig.say('status', 'connecting'); // a native EventSource after a network error
  assert.deepEqual(rig.heard(), [['status', 'connecting']]);
  assert.equal(rig.attempts.length, 1);
  rig.heartbeat();
  assert.deepEqual(rig.heard(), [['status', 'connected']]);
});

test('an old attempt is not heard once it is replaced', () => {
  const rig = new Rig();
  const old = rig.attempts[0];
  rig.say('status', 'closed');
  rig.clock.fire();
  rig.heard();
  old.say('event', { type: 'message', data: 'stale', lastEventId: 'E:9' });
  assert.deepEqual(rig.heard(), []);
});

test('close stops everything', () => {
  const rig = new Rig();
  rig.say('status', 'closed');
  assert.deepEqual(rig.clock.pending(), [500]);
  rig.connection.close();
  assert.deepEqual(rig.clock.pending(), []);
  assert.deepEqual(rig.tried(), [['eventsource', '', true]]);
});

test('a stream that opens but shows nothing in time, the server answering, is reopened', async () => {
  const rig = new Rig();
  await rig.foundBuffered();
  assert.deepEqual(rig.tried(), [['eventsource', '', true]]);
  assert.deepEqual(rig.clock.pending(), [500]); // a reconnection waits its turn in the backoff
  rig.clock.fire();
  assert.deepEqual(rig.tried().at(-1), ['eventsource', '', false]);
  assert.ok(!rig.heard().some(([, value]) => value === 'connected'));
});

test('a stream found buffered twice switches to long polling for the session', async () => {
  const rig = new Rig();
  rig.deliver('a', 'E:1');
  rig.say('status', 'closed'); // (now it has an id to resume by)
  rig.clock.fire();
  rig.heard();

  await rig.foundBuffered();
  rig.clock.fire();
  await rig.foundBuffered();

  assert.deepEqual(rig.tried().at(-1), ['longpoll', 'E:1', false]);
  const [transport, notice, status] = rig.heard().slice(-3);
  assert.deepEqual(transport, ['transport', 'longpoll']);
  assert.ok(notice[0] === 'notice' && notice[1].includes('long polling'));
  assert.deepEqual(status, ['status', 'connecting']);
  assert.equal(rig.memory.chosen(), true);
  // The long-poll transport is not watched: an answered poll is enough.
  rig.say('status', 'connected');
  assert.deepEqual(rig.clock.pending(), []);
  assert.deepEqual(rig.heard(), [['status', 'connected']]);

  // The next connection of this tab (a reload, or taking over as leader)
  // starts on the fallback and says why.
  rig.connection.close();
  const again = new Rig({ memory: rig.memory, lastEventId: 'E:9' });
  assert.deepEqual(again.tried(), [['longpoll', 'E:9', false]]);
  assert.deepEqual(again.heard().map(([kind]) => kind), ['notice', 'transport', 'status']);
});

test('a server that does not answer is not a buffering proxy', async () => {
  // A paused or unreachable server: the stream shows nothing, nor does a
  // plain request. It keeps trying EventSource, backing off.
  const rig = new Rig();
  const waits = [];
  for (let i = 0; i < 4; i += 1) {
    rig.clock.fire();
    await rig.answer(false);
    waits.push(rig.clock.fire());
  }
  assert.deepEqual(waits, [500, 1000, 2000, 4000]);
  assert.deepEqual(new Set(rig.tried().map((a) => a[0])), new Set(['eventsource']));
});

test('buffered once, then live, does not count towards the switch', async () => {
  const rig = new Rig();
  await rig.foundBuffered();
  rig.clock.fire();
  rig.heartbeat(); // live after all
  rig.say('status', 'closed');
  rig.clock.fire();
  await rig.foundBuffered(); // buffered again, but not twice in a row
  rig.clock.fire();
  assert.deepEqual(new Set(rig.tried().map((a) => a[0])), new Set(['eventsource']));
});

test('a pinned stream found buffered keeps trying EventSource', async () => {
  const rig = new Rig({ pinned: true });
  const waits = [];
  for (let i = 0; i < 4; i += 1) {
    await rig.foundBuffered();
    waits.push(rig.clock.fire());
  }
  assert.deepEqual(waits, [500, 1000, 2000, 4000]); // buffered counts as a failure in the backoff
  assert.deepEqual(new Set(rig.tried().map((a) => a[0])), new Set(['eventsource']));
  assert.ok(!rig.heard().some(([kind, value]) => value === 'connected' || (kind === 'transport' && value === 'longpoll')));
});

test('closing while probing ends it all', async () => {
  const rig = new Rig();
  rig.clock.fire();
  rig.connection.close();
  await rig.answer(true);
  assert.deepEqual(rig.clock.pending(), []);
  assert.equal(rig.attempts.length, 1);
});

test('a stream silent for two and a half keep-alive periods is reopened by its id', () => {
  const rig = new Rig();
  rig.heartbeat();
  rig.deliver('a', 'E:5');
  assert.deepEqual(rig.clock.pending(), [SILENT_MS]); // each sign of life starts it again
  rig.heard();
  assert.equal(rig.clock.fire(), SILENT_MS);
  assert.deepEqual(rig.heard(), [['status', 'connecting']]);
  assert.equal(rig.probes.length, 0); // it was live: silence is not buffering
  rig.clock.fire();
  assert.deepEqual(rig.tried(), [['eventsource', '', true], ['eventsource', 'E:5', false]]);
});

test('heartbeats are signs of life, never events', () => {
  const rig = new Rig();
  rig.heartbeat();
  rig.heartbeat();
  assert.deepEqual(rig.heard().filter(([kind]) => kind === 'event'), []);
});

test('what it does on the wire is said as text, for a view to list', () => {
  const rig = new Rig();
  const wire = [];
  rig.connection.addEventListener('wire', (e) => wire.push(e.detail));
  rig.attempts.at(-1).say('wire', 'GET /ticker');
  rig.say('status', 'closed');
  assert.deepEqual(wire, ['GET /ticker', '… next try in 500 ms (backoff)']);
});

test('on the wire, each event shows its id and data, and each wait its reason', () => {
  const rig = new Rig();
  const wire = [];
  rig.connection.addEventListener('wire', (e) => wire.push(e.detail));
  rig.deliver('101.25', '7');
  rig.say('status', 'closed', '3');
  assert.deepEqual(wire, ['id: 7 data: 101.25', '… next try in 3.5 s (Retry-After: 3, then backoff)']);
});

// --- The page's tabs: a follower remembers the switch -----------------------------

/** A tab of a page (page.js keepStream) whose stream every tab shares, with its own clock and session. */
async function pageTab({ locks, bus }) {
  const tab = { clock: new FakeClock(), memory: sessionLike(), attempts: [], role: null, transport: null };
  const attempt = (transport) => () => {
    const made = new FakeAttempt(transport);
    tab.attempts.push(made);
    return made;
  };
  tab.connection = keepStream({
    stream: '/ticker', attempts: { eventsource: attempt('eventsource'), longpoll: attempt('longpoll') },
    transport: 'eventsource', pinned: false, memory: tab.memory,
    keepOpen: { keepalive: KEEPALIVE, clock: tab.clock, random: () => 0.5, probe: async () => true },
    tabs: { elect: electByLock(locks), channel: bus.channel, lifecycle: null },
  });
  listen(tab.connection, { role: (role) => { tab.role = role; }, transport: (shown) => { tab.transport = shown; } });
  tab.connection.open();
  await until(() => tab.role !== null, () => 'the tab has no role');
  return tab;
}

test('a follower remembers the leader\'s switch to long polling, and starts there when it takes over', async () => {
  const shared = { locks: new FakeLocks(), bus: new FakeBus() };
  const leader = await pageTab(shared);
  const follower = await pageTab(shared);
  assert.deepEqual([leader.role, follower.role], ['leader', 'follower']);

  // Behind a buffering proxy: the leader's stream shows nothing in time,
  // twice, while the server answers a plain request.
  for (const wait of [BUFFERED_MS, 500, BUFFERED_MS]) {
    assert.equal(leader.clock.fire(), wait); // the watchdog, the backoff, the watchdog
    await new Promise((resolve) => setImmediate(resolve)); // the probe answers
  }
  assert.deepEqual(leader.attempts.map((a) => a.transport), ['eventsource', 'eventsource', 'longpoll']);
  await until(() => follower.transport === 'longpoll', () => `the follower shows ${follower.transport}`);
  assert.deepEqual(follower.attempts, []);

  leader.connection.close();
  await until(() => follower.role === 'leader', () => 'no new leader');
  assert.deepEqual(follower.attempts.map((a) => a.transport), ['longpoll']);
  assert.equal(follower.transport, 'longpoll');
  follower.connection.close();
});
