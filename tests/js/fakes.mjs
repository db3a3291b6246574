// What the browser modules' tests run against instead of a browser: a clock
// that moves only when a test fires a timer, Web Locks (a tab's own view
// of them can be frozen) and a BroadcastChannel for many tabs in one process, the polyfill loaded as the
// classic script it is, and a bounded wait for a condition.
import { readFileSync } from 'node:fs';
import vm from 'node:vm';

/** A clock for KeepOpen and the Watchdog: time moves only in fire(). */
export class FakeClock {
  time = 0;
  timers = new Map();
  #last = 0;

  now() {
    return this.time;
  }

  setTimeout(callback, ms) {
    this.timers.set(++this.#last, { at: this.time + ms, ms, callback });
    return this.#last;
  }

  clearTimeout(id) {
    this.timers.delete(id);
  }

  /** The pending timers' delays, soonest first. */
  pending() {
    return [...this.timers.values()].map((timer) => timer.ms).sort((a, b) => a - b);
  }

  /** Fires the soonest timer; returns the delay it was set for. */
  fire() {
    const [id, timer] = [...this.timers.entries()].sort((a, b) => a[1].at - b[1].at)[0];
    this.timers.delete(id);
    this.time = timer.at;
    timer.callback();
    return timer.ms;
  }
}

/**
 * navigator.locks as tabs.js uses it: request(name, {ifAvailable, signal},
 * callback) grants each name to one holder at a time, queues the others in
 * order, and passes it on when the holder's callback settles.
 */
export class FakeLocks {
  #held = new Set();
  #queues = new Map();

  request(name, { ifAvailable = false, signal = null } = {}, callback) {
    return new Promise((resolve, reject) => {
      const waiter = { callback, resolve, reject };
      const queue = this.#queues.get(name) ?? [];
      this.#queues.set(name, queue);
      if (!this.#held.has(name) && queue.length === 0) {
        this.#grant(name, waiter);
      } else if (ifAvailable) {
        Promise.resolve().then(() => callback(null)).then(resolve, reject);
      } else {
        queue.push(waiter);
        signal?.addEventListener('abort', () => {
          const at = queue.indexOf(waiter);
          if (at < 0) return;
          queue.splice(at, 1);
          reject(Object.assign(new Error('aborted'), { name: 'AbortError' }));
        });
      }
    });
  }

  #grant(name, waiter) {
    this.#held.add(name);
    const release = () => {
      this.#held.delete(name);
      const next = this.#queues.get(name).shift();
      if (next) this.#grant(name, next);
    };
    Promise.resolve()
      .then(() => waiter.callback({ name }))
      .then((value) => {
        release();
        waiter.resolve(value);
      }, (error) => {
        release();
        waiter.reject(error);
      });
  }
}

/**
 * One tab's navigator.locks, over FakeLocks, that the test can freeze: a
 * frozen tab runs nothing, so a lock granted to it meanwhile stays held,
 * its callback waiting until thaw().
 */
export class FreezableLocks {
  #locks;
  #thawed = null; // while frozen: what thaw() resolves
  #thaw = null;

  constructor(locks) {
    this.#locks = locks;
  }

  freeze() {
    this.#thawed = new Promise((resolve) => { this.#thaw = resolve; });
  }

  thaw() {
    this.#thaw?.();
    this.#thawed = null;
  }

  request(name, options, callback) {
    return this.#locks.request(name, options, async (lock) => {
      if (this.#thawed) await this.#thawed;
      return callback(lock);
    });
  }
}

/**
 * BroadcastChannels of many tabs in one process: `bus.channel(name)` is
 * one tab's; a message reaches every other open channel of that name
 * `delayMs` later, in order, as a copy.
 */
export class FakeBus {
  #open = new Set();

  constructor({ delayMs = 0 } = {}) {
    this.delayMs = delayMs;
  }

  channel = (name) => {
    const bus = this;
    const channel = {
      name,
      onmessage: null,
      postMessage(message) {
        const data = structuredClone(message);
        for (const other of bus.#open) {
          if (other === channel || other.name !== name) continue;
          setTimeout(() => {
            if (bus.#open.has(other)) other.onmessage?.({ data });
          }, bus.delayMs);
        }
      },
      close() {
        bus.#open.delete(channel);
      },
    };
    this.#open.add(channel);
    return channel;
  };
}

/** Waits until `condition()` holds, at most `ms`; fails with `describe()`. */
export async function until(condition, describe, ms = 2000) {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${describe()}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const POLYFILL = new URL('../../static/js/eventsource-fallback.js', import.meta.url);

/**
 * static/js/eventsource-fallback.js, run as the classic script it is in a
 * context of its own whose global is its `window`; returns that global,
 * with parseEventStream, LongPollEventSource and openEventSource on it.
 * `globals` adds to or replaces what it finds there (fetch, setTimeout).
 */
export function loadPolyfill(globals = {}) {
  const context = vm.createContext({
    EventTarget, Event, MessageEvent: globalThis.MessageEvent ?? NodeMessageEvent, URL, TextDecoder, AbortController, console,
    setTimeout, clearTimeout, queueMicrotask,
    document: { baseURI: 'http://127.0.0.1:8888/stock' },
    ...globals,
  });
  context.window = context;
  vm.runInContext(readFileSync(POLYFILL, 'utf8'), context, { filename: POLYFILL.pathname });
  return context;
}

// For a Node without a global MessageEvent: what the polyfill dispatches.
class NodeMessageEvent extends Event {
  constructor(type, { data = null, lastEventId = '', origin = '' } = {}) {
    super(type);
    Object.assign(this, { data, lastEventId, origin });
  }
}

/** A value made in another context as plain objects of this one, for deepStrictEqual. */
export function plain(value) {
  return JSON.parse(JSON.stringify(value));
}
