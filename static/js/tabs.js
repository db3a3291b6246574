// Tab sharing: the site's tabs in one browser that show the same stream over
// the same transport share one connection (docs/protocol.md, "Tabs share").
//
// Why: over HTTP/1.1 a browser opens at most six connections to one origin,
// and every open stream or held poll keeps one of them busy for as long as
// its page is open. Six tabs, and the seventh never loads; a post waits
// behind the streams for ever. So one tab, the leader, holds the connection
// and relays everything it says over a BroadcastChannel. The other tabs, the
// followers, say what it relays and open nothing of their own.
//
//   const shared = shareConnection('/ticker|auto', keepOpen);  // a Connection too
//   shared.addEventListener('event', (e) => draw(e.detail));   // and status, role, ...
//   shared.open();                 // this tab joins
//   shared.close();                // on pagehide: this tab leaves
//
// Electing the leader: with Web Locks where the page is a secure context
// (https, or http on localhost): every tab asks for one lock named after the
// key, the browser grants it to one tab and queues the others, and hands it
// to the next when the holder releases it or goes away (even if it crashes).
// Elsewhere, navigator.locks does not exist, and a lease in localStorage
// stands in for the lock (electByLease below).
//
// Hand-over: a leader leaving (closed, navigated away, put in the back/forward
// cache, or frozen) closes its connection, says 'bye' and releases the lock;
// the next tab opens the connection again from the last event id IT saw, so
// the stream resumes where this browser stood. Only the leader opens the
// connection, so the page's own recovery (backoff, watchdog, fallback) runs
// there only.
import { Connection, listen } from './connection.js';

const PREFIX = 'comet-tabs:';
// What the leader relays: everything its connection says. (A tab's role is
// its own.)
const RELAYED = ['event', 'notice', 'status', 'transport', 'wire'];
// The longest a new leader waits for the old one's 'bye' before it opens
// the connection. Nothing is shown twice without it (see showOnce); it only
// spares the server replaying, and the tabs skipping, the old leader's
// last relays that were still on their way.
const BYE_MS = 250;

// --- Every event once, by id ----------------------------------------
//
// A tab can be handed the same event twice: a follower shows the old
// leader's last relays, which may arrive late, and the new leader resumes
// from the last id IT saw, which may be earlier. Ids are ordered within a
// stream, `E:N` (the chat: N grows within the history E, its epoch) or a
// bare `K` (the ticker), so each tab keeps the newest id it has shown and
// skips an event at or before it in the same era. Two things start an era
// afresh: another epoch, and a connection whose own ids go back (a state
// stream whose server restarted and counts from 1 again): the tab that
// holds that connection marks such an event `restarted` for every tab.

/** `E:N` as {era: 'E', n: N}, `K` as {era: '', n: K}; null for an id without a number. */
export function idOrder(id) {
  if (typeof id !== 'string') return null;
  const colon = id.lastIndexOf(':');
  const number = id.slice(colon + 1);
  if (!/^[0-9]+$/.test(number)) return null;
  return { era: colon < 0 ? '' : id.slice(0, colon), n: Number(number) };
}

/** Is `id` at or before `than` in the same era? */
export function notAfter(id, than) {
  const a = idOrder(id);
  const b = idOrder(than);
  return a !== null && b !== null && a.era === b.era && a.n <= b.n;
}

/**
 * showOnce(show) -> offer(event, restarted): shows `event` unless this tab
 * has shown it (or a later one of its era) already.
 */
export function showOnce(show) {
  let newest = ''; // the id of the newest event shown
  return (event, restarted = false) => {
    const id = event.lastEventId;
    if (!restarted && notAfter(id, newest)) return false;
    if (idOrder(id) !== null) newest = id;
    show(event);
    return true;
  };
}

// --- Electing the leader ----------------------------------------------
//
// elect(name, tabId, { lead, follow }) -> resign()
// calls lead() when this tab becomes the leader and follow() when it is
// (or becomes again) a follower; resign() leaves the election for good.

// tutorial: elect-by-lock
export function electByLock(locks) {
  return (name, tabId, role) => {
    const leaving = new AbortController();
    let release = null;
    // Granted: lead until resign() resolves the promise the lock is held by.
    const hold = () => {
      if (leaving.signal.aborted) return null;
      return new Promise((resolve) => {
        release = resolve;
        role.lead();
      });
    };
    const quietly = (error) => {
      if (error.name !== 'AbortError') throw error;
    };
    // First ask without queueing, to know at once whether we follow.
    locks.request(name, { ifAvailable: true }, (lock) => (lock ? hold() : 'taken'))
      .then((answer) => {
        if (answer !== 'taken' || leaving.signal.aborted) return null;
        role.follow();
        return locks.request(name, { signal: leaving.signal }, hold);
      })
      .catch(quietly);
    return () => {
      leaving.abort(); // the queued request: a frozen or cached tab must never be granted the lock
      if (release) release();
    };
  };
}
// end tutorial: elect-by-lock

// Without Web Locks: a lease in localStorage, `{owner, expires}`, that the
// leader renews every RENEW_MS. A follower claims it when it is free
// (removed by a leader leaving, which other tabs hear as a `storage`
// event) or expired (a leader that crashed): it writes its own name, waits
// SETTLE_MS for every other tab's write to reach it, and leads only if its
// name is still the one stored. localStorage settles on one value per key,
// so of tabs claiming at once, one wins. A leader that finds another
// owner's live lease stored steps down, so two leaders never last.
//
// Hidden tabs run timers once a second at best (once a minute after five
// minutes), so an expired lease does not prove its owner gone: before
// taking it over, a follower pings the owner over a BroadcastChannel, and a
// live owner answers and renews at once (messages are not throttled).
const LEASE_MS = 3000;
const RENEW_MS = 500;
const SETTLE_MS = 100;
const PING_MS = 250;

function electByLease(key, tabId, role) {
  const name = key + '|lease';
  const pings = new BroadcastChannel(name);
  let leading = null; // true, false, or null before the first outcome
  let claiming = false;
  let resigned = false;
  let answered = null; // resolves a ping in flight when its owner answers

  const read = () => {
    try {
      return JSON.parse(localStorage.getItem(name));
    } catch {
      return null;
    }
  };
  const renew = () => localStorage.setItem(name, JSON.stringify({ owner: tabId, expires: Date.now() + LEASE_MS }));
  const become = (leader) => {
    if (resigned || leading === leader) return;
    leading = leader;
    if (leader) role.lead();
    else role.follow();
  };

  function check() {
    if (resigned) return;
    const lease = read();
    const live = lease !== null && lease.expires > Date.now();
    if (leading) {
      if (live && lease.owner !== tabId) become(false);
      else renew();
    } else if (!live || lease.owner === tabId) {
      claim(lease);
    } else {
      become(false);
    }
  }

  async function claim(lease) {
    if (claiming) return;
    claiming = true;
    try {
      if (lease !== null && lease.owner !== tabId && (await alive(lease.owner))) {
        become(false);
        return;
      }
      renew();
      await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
      const settled = read();
      become(settled !== null && settled.owner === tabId);
    } finally {
      claiming = false;
    }
  }

  function alive(owner) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        answered = null;
        resolve(false);
      }, PING_MS);
      answered = (from) => {
        if (from !== owner) return;
        clearTimeout(timer);
        answered = null;
        resolve(true);
      };
      pings.postMessage({ ping: owner });
    });
  }

  pings.onmessage = ({ data }) => {
    if (data.ping === tabId && leading) {
      renew();
      pings.postMessage({ pong: tabId });
    } else if (data.pong && answered) {
      answered(data.pong);
    }
  };
  const onStorage = (event) => {
    if (event.key === name || event.key === null) check();
  };
  window.addEventListener('storage', onStorage);
  const timer = setInterval(check, RENEW_MS);
  check();

  return () => {
    resigned = true;
    clearInterval(timer);
    window.removeEventListener('storage', onStorage);
    pings.close();
    const lease = read();
    if (lease !== null && lease.owner === tabId) localStorage.removeItem(name); // the others hear it at once
  };
}

function storageWorks() {
  try {
    localStorage.getItem(PREFIX);
    return true;
  } catch {
    return false; // storage disabled for this site
  }
}

// --- Sharing ----------------------------------------------------------

/**
 * `shareConnection(key, connection)`: a Connection that shares `connection`
 * with this browser's other tabs of the same `key` (the stream and its
 * transport); it also says this tab's `role`. Where the browser cannot share
 * (no BroadcastChannel, neither Web Locks nor localStorage) it returns
 * `connection` itself. The options are for tests: `elect`, `channel(name)`,
 * `lifecycle` (what fires 'freeze' and 'resume'), `byeMs`.
 */
export function shareConnection(key, connection, {
  elect = defaultElection(),
  channel = typeof BroadcastChannel === 'function' ? (name) => new BroadcastChannel(name) : null,
  lifecycle = globalThis.document ?? null,
  byeMs = BYE_MS,
} = {}) {
  if (elect === null || channel === null) return connection;
  return new SharedConnection(PREFIX + key, connection, { elect, channel, lifecycle, byeMs });
}

function defaultElection() {
  if (typeof navigator !== 'undefined' && 'locks' in navigator) return electByLock(navigator.locks);
  return storageWorks() ? electByLease : null;
}

class SharedConnection extends Connection {
  #name;
  #inner;
  #options;
  #tabId = Math.random().toString(36).slice(2) + Date.now().toString(36);
  #channel = null;
  #lastEventId = ''; // of the last event this tab showed: where a new leader resumes
  #role = null;
  #leaderId = null; // the tab whose relays this follower shows
  #takingOver = null; // the timer of a new leader waiting for the old one's 'bye'
  #stopLeading = null;
  #resign = null;
  #offer = showOnce((event) => {
    if (typeof event.lastEventId === 'string') this.#lastEventId = event.lastEventId;
    this.say('event', event);
  });

  constructor(name, inner, options) {
    super();
    this.#name = name;
    this.#inner = inner;
    this.#options = options;
  }

  open(lastEventId = '') {
    if (this.#channel !== null) return;
    if (lastEventId !== '') this.#lastEventId = lastEventId;
    this.#channel = this.#options.channel(this.#name);
    this.#channel.onmessage = ({ data }) => this.#heard(data);
    this.#options.lifecycle?.addEventListener('freeze', this.#pause);
    this.#options.lifecycle?.addEventListener('resume', this.#resume);
    this.#resume();
  }

  // Leave for good: the connection closes first, then another tab takes over.
  close() {
    if (this.#channel === null) return;
    this.#options.lifecycle?.removeEventListener('freeze', this.#pause);
    this.#options.lifecycle?.removeEventListener('resume', this.#resume);
    this.#pause();
    this.#channel.close();
    this.#channel = null;
  }

  #post(kind, value, restarted = false) {
    this.#channel.postMessage({ from: this.#tabId, kind, value, restarted });
  }

  // tutorial: lead
  // Granted the lock or the lease. The old leader's last relays may still
  // be on their way (the election and the channel are separate roads).
  // Resuming before them costs only a replay that every tab skips (see
  // showOnce); they all come before its 'bye', so wait for that, but not
  // longer than BYE_MS (a tab that crashed says nothing).
  #lead() {
    if (this.#leaderId === null || this.#leaderId === this.#tabId) this.#startLeading();
    else this.#takingOver = setTimeout(() => this.#startLeading(), this.#options.byeMs);
  }

  #startLeading() {
    clearTimeout(this.#takingOver);
    this.#takingOver = null;
    this.#role = 'leader';
    this.#leaderId = this.#tabId;
    this.say('role', 'leader');
    this.say('wire', `⇄ this tab holds the connection now, from id ${this.#lastEventId || '(none)'}`);
    let previous = this.#lastEventId; // the connection's own last id: going back is a restart
    const relay = (kind) => (value) => {
      this.say(kind, value);
      this.#post(kind, value);
    };
    const stopListening = listen(this.#inner, {
      event: (event) => {
        const restarted = notAfter(event.lastEventId, previous);
        if (idOrder(event.lastEventId) !== null) previous = event.lastEventId;
        this.#offer(event, restarted);
        this.#post('event', event, restarted);
      },
      status: relay('status'), transport: relay('transport'), notice: relay('notice'), wire: relay('wire'),
    });
    this.#inner.open(this.#lastEventId);
    this.#stopLeading = () => {
      stopListening(); // this term's connection is silent from now, whatever it still says
      this.#inner.close();
      this.#post('bye');
    };
  }
  // end tutorial: lead

  #follow() {
    this.#stopLeading?.();
    this.#stopLeading = null;
    this.#role = 'follower';
    this.#leaderId = null;
    this.say('role', 'follower');
    this.say('wire', '⇄ another tab holds the connection: showing what it relays');
    this.say('status', 'connecting'); // until the leader says how its connection is
    this.#post('hello');
  }

  #heard(data) {
    if (data.kind === 'hello') {
      // A new follower: tell it what it cannot have seen.
      if (this.#role === 'leader') for (const kind of ['transport', 'status']) {
        if (kind in this.latest) this.#post(kind, this.latest[kind]);
      }
    } else if (this.#role !== 'follower') {
      // The leader shows its own connection only.
    } else if (data.kind === 'bye') {
      if (data.from !== this.#leaderId) return;
      this.#leaderId = null;
      if (this.#takingOver) this.#startLeading();
      else this.say('status', 'connecting');
    } else if (RELAYED.includes(data.kind)) {
      this.#leaderId = data.from;
      if (data.kind === 'event') this.#offer(data.value, data.restarted);
      else if (data.kind === 'wire') this.say('wire', `relayed: ${data.value}`);
      else this.say(data.kind, data.value);
    }
  }

  // Leave the election: the connection closes first, then another tab
  // takes over. The channel stays open and the tab goes on showing what
  // the leader relays, so a tab that was only frozen misses nothing.
  #pause = () => {
    clearTimeout(this.#takingOver);
    this.#takingOver = null;
    this.#stopLeading?.();
    this.#stopLeading = null;
    this.#resign?.();
    this.#resign = null;
    this.#role = 'follower';
  };

  // A frozen tab runs nothing: it must not hold, or be next for, the lock.
  #resume = () => {
    if (this.#resign === null) {
      this.#resign = this.#options.elect(this.#name, this.#tabId, {
        lead: () => this.#lead(),
        follow: () => this.#follow(),
      });
    }
  };
}
