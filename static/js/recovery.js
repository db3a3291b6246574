// Keeping a stream open whatever happens to it. One attempt at a transport
// (transport.js, or the chat's own loop) ends when the network or the
// server fails it; KeepOpen, a Connection, opens the next after a
// randomized backoff, resuming by the last id, and watches a native stream
// for heartbeats. Its pieces each hold one idea, and take their clock and
// random source as arguments, so that tests/js runs them in Node:
//   Backoff           how long to wait before the next attempt
//   retryAfterMs      a Retry-After header, in ms
//   Watchdog          a native stream that is not live in time, or falls silent
//   FallbackDecision  buffered twice in a row: switch to long polling
import { Connection, listen } from './connection.js';
import { duration, eventLine } from './wire.js';

const BACKOFF_BASE_MS = 1000; // the first wait after a failure is up to this
const BACKOFF_CAP_MS = 30000; // no wait grows past this
const RETRY_AFTER_CAP_MS = 5 * 60 * 1000; // a Retry-After longer than this is cut to it

export const realClock = {
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (timer) => clearTimeout(timer),
  now: () => Date.now(),
};

// tutorial: backoff
/**
 * How long to wait before the next attempt: "full jitter". After the n-th
 * failure in a row the wait is drawn uniformly from [0, min(cap, base·2^n)),
 * so clients dropped together (a restart) come back spread out, and one that
 * keeps failing asks less and less often. A Retry-After is waited out first,
 * and the jitter comes on top, so clients told the same time still spread.
 * `reset()` once a connection has delivered.
 */
export class Backoff {
  #failures = 0;

  constructor({ base = BACKOFF_BASE_MS, cap = BACKOFF_CAP_MS, random = Math.random } = {}) {
    this.base = base;
    this.cap = cap;
    this.random = random;
  }

  next(retryAfter = 0) {
    const span = Math.min(this.cap, this.base * 2 ** this.#failures);
    this.#failures += 1;
    return retryAfter + this.random() * span;
  }

  reset() {
    this.#failures = 0;
  }
}
// end tutorial: backoff

/**
 * A Retry-After header in ms from `now`: delay-seconds, or an HTTP date
 * ("Sun, 06 Nov 1994 08:49:37 GMT"). 0 without one or for anything else.
 */
export function retryAfterMs(value, now) {
  let ms = 0;
  if (/^\s*[0-9]+\s*$/.test(value ?? '')) ms = Number(value) * 1000;
  else if (/^\s*\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT\s*$/.test(value ?? '')) ms = Date.parse(value) - now;
  return Number.isFinite(ms) ? Math.min(Math.max(ms, 0), RETRY_AFTER_CAP_MS) : 0;
}

// tutorial: watchdog
/**
 * The watchdog's two limits, from the server's --keepalive in seconds. A
 * stream asked for with ?heartbeat=1 sends a heartbeat with its first bytes
 * and then at least one every keep-alive period.
 *   bufferedMs  a new stream has not shown even its first heartbeat. It needs
 *               only a round trip, so one keep-alive period is generous, but
 *               at least 2 s (a busy machine) and at most 5 s. Then the page
 *               asks whether the server answers a plain request (probe): if
 *               it does, something between holds the stream back: buffered.
 *   silentMs    a live stream has shown nothing for two keep-alive periods
 *               and a half: two heartbeats missed, with half a period of
 *               slack (a half-open connection after sleep, a paused server).
 */
export function watchdogTimes(keepalive) {
  const period = keepalive * 1000;
  return { bufferedMs: Math.min(5000, Math.max(2000, period)), silentMs: 2.5 * period };
}
// end tutorial: watchdog

/**
 * The watchdog over one attempt at a native stream: `start()` as it opens,
 * `alive()` at each sign of life, `stop()` when it ends. Quiet too long, it
 * calls `quiet('late')` (never live within bufferedMs) or `quiet('silent')`
 * (nothing within silentMs of the last sign of life).
 */
export class Watchdog {
  #timer = null;

  constructor({ keepalive, quiet, clock = realClock }) {
    this.times = watchdogTimes(keepalive);
    this.quiet = quiet;
    this.clock = clock;
  }

  start() {
    this.#arm(this.times.bufferedMs, 'late');
  }

  alive() {
    this.#arm(this.times.silentMs, 'silent');
  }

  stop() {
    this.clock.clearTimeout(this.#timer);
    this.#timer = null;
  }

  #arm(ms, why) {
    this.stop();
    this.#timer = this.clock.setTimeout(() => {
      this.#timer = null;
      this.quiet(why);
    }, ms);
  }
}

/**
 * Whether to leave EventSource for long polling. A stream not live in time
 * while the server answers a plain request is held back on its way here (a
 * buffering proxy, a virus scanner); twice in a row, and the page switches,
 * unless the URL pinned the transport. A live attempt in between starts the
 * count again. `memory` ({chosen(), remember()}) keeps the switch for the
 * rest of the session, so the next connection starts on the fallback.
 */
export class FallbackDecision {
  #buffered = 0;

  constructor({ pinned = false, memory = { chosen: () => false, remember() {} } } = {}) {
    this.pinned = pinned;
    this.memory = memory;
  }

  /** This session switched earlier: start on the fallback. */
  get chosenEarlier() {
    return !this.pinned && this.memory.chosen();
  }

  live() {
    this.#buffered = 0;
  }

  /** An attempt was found buffered; true: switch now. */
  buffered() {
    this.#buffered += 1;
    if (this.#buffered < 2 || this.pinned) return false;
    this.memory.remember();
    return true;
  }
}

/**
 * The recovery loop, a Connection that keeps the stream open until close().
 * `attempts` maps each transport to a function that makes one attempt, a
 * Connection of its own. An attempt says each `event` (a native stream's
 * heartbeats too), `status` 'connected' once it is live (an answered poll),
 * 'connecting' while it retries by itself, 'closed' when it gave up (its
 * `retryAfter` holds the answer's Retry-After header, or null), and `wire`.
 * Every new attempt waits its turn in the Backoff, which a live attempt
 * resets. A native stream is watched (Watchdog); one not live in time is
 * probed (`probe(ms)`: does the server answer a plain request?), and the
 * FallbackDecision may switch to `longpoll`. On the wire it passes on
 * what the attempt says, and adds each event and each wait before a retry
 * with its reason.
 */
export class KeepOpen extends Connection {
  #transport;
  #attempt = null; // the attempt in flight; what older ones say is ignored
  #unlisten = () => {};
  #last = ''; // the id to resume by
  #live = false; // the attempt in flight has shown a sign of life
  #reopen = null; // the pending next attempt
  #probing = null; // the probe in flight's token

  constructor({ attempts, transport, pinned = false, keepalive, memory, probe, clock = realClock, random = Math.random }) {
    super();
    this.#transport = transport;
    this.attempts = attempts;
    this.probe = probe;
    this.clock = clock;
    this.backoff = new Backoff({ random });
    this.fallback = new FallbackDecision({ pinned, memory });
    this.watchdog = new Watchdog({ keepalive, clock, quiet: (why) => this.#quiet(why) });
  }

  open(lastEventId = '') {
    this.close();
    this.#last = lastEventId;
    this.backoff.reset();
    this.fallback.live();
    if (this.fallback.chosenEarlier) {
      this.#transport = 'longpoll';
      this.say('notice', 'Using long polling: earlier in this session the event stream was held back on its way here.');
    }
    this.say('transport', this.#transport);
    this.#try();
  }

  close() {
    this.#stopAttempt();
    this.clock.clearTimeout(this.#reopen);
    this.#reopen = null;
  }

  #try() {
    this.#reopen = null;
    this.#live = false;
    this.say('status', 'connecting');
    const attempt = this.#attempt = this.attempts[this.#transport]();
    const mine = (handler) => (value) => {
      if (this.#attempt === attempt) handler(value);
    };
    this.#unlisten = listen(attempt, {
      event: mine((event) => this.#delivered(event)),
      status: mine((state) => {
        if (state === 'connected') this.#alive();
        else if (state === 'connecting') this.#retrying();
        else if (state === 'closed') this.#closed(attempt.retryAfter);
      }),
      wire: mine((record) => this.say('wire', record)),
    });
    if (this.#transport === 'eventsource') this.watchdog.start();
    attempt.open(this.#last);
  }

  #alive() {
    if (this.#transport === 'eventsource') this.watchdog.alive();
    if (this.#live) return;
    this.#live = true;
    this.fallback.live();
    this.backoff.reset();
    this.say('status', 'connected');
  }

  #delivered(event) {
    this.say('wire', eventLine(event));
    this.#alive();
    if (event.type === 'heartbeat') return; // a sign of life, with no id
    this.#last = event.lastEventId;
    this.say('event', event);
  }

  // A native EventSource reconnecting by itself after a network error.
  #retrying() {
    if (this.#transport === 'eventsource') this.watchdog.alive();
    this.#live = false;
    this.say('status', 'connecting');
  }

  // The attempt gave up; the server may have said when to come back.
  #closed(retryAfter) {
    const ms = this.backoff.next(retryAfterMs(retryAfter, this.clock.now()));
    this.#retryLater(ms, retryAfter === null ? 'backoff' : `Retry-After: ${retryAfter}, then backoff`);
  }

  #retryLater(ms, why = 'backoff') {
    this.#stopAttempt();
    this.#live = false;
    this.say('status', 'connecting');
    this.say('wire', `… next try in ${duration(ms)} (${why})`);
    this.#reopen = this.clock.setTimeout(() => this.#try(), ms);
  }

  #stopAttempt() {
    this.#probing = null;
    this.watchdog.stop();
    this.#unlisten();
    this.#unlisten = () => {};
    const attempt = this.#attempt;
    this.#attempt = null;
    attempt?.close();
  }

  #quiet(why) {
    if (why === 'silent') {
      this.say('wire', `✕ silent: no heartbeat for ${duration(this.watchdog.times.silentMs)}`);
      this.#retryLater(this.backoff.next());
    } else {
      this.say('wire', `✕ late: no heartbeat within ${duration(this.watchdog.times.bufferedMs)}; ` +
        'does the server answer a plain request? (held back on the way, or away)');
      this.#notLiveInTime();
    }
  }

  // tutorial: found-buffered
  // A buffering proxy and a server that does not answer look the same
  // from here; a plain request tells them apart.
  async #notLiveInTime() {
    this.#stopAttempt();
    const mine = this.#probing = {};
    const answered = await this.probe(this.watchdog.times.bufferedMs);
    if (this.#probing !== mine) return; // closed meanwhile
    this.#probing = null;
    if (!answered || !this.fallback.buffered()) {
      this.#retryLater(this.backoff.next());
      return;
    }
    this.#transport = 'longpoll';
    this.say('transport', this.#transport);
    this.say('notice', 'Switched to long polling: the event stream was held back on its way here ' +
      '(a buffering proxy or a virus scanner), twice in a row.');
    this.#try();
  }
  // end tutorial: found-buffered
}
