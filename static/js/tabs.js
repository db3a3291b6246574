// Tab sharing: the site's tabs in one browser that show the same stream over
// the same transport share one connection (docs/protocol.md, "Tabs share").
//
// Why: over HTTP/1.1 a browser opens at most six connections to one origin,
// and every open stream or held poll keeps one of them busy for as long as
// its page is open. Six tabs, and the seventh never loads; a post waits
// behind the streams for ever. So one tab, the leader, holds the connection:
// it runs the page's connection factory, `open(lastEventId, emit)`, and
// relays every emit over a BroadcastChannel. The other tabs, the followers,
// show what it relays and open nothing of their own.
//
//   const shared = shareConnection('/ticker|auto', open, { share: true });
//   shared.onevent = (ev) => ...;   // also onstatus, ontransport, onnotice, onrole
//   shared.close();                 // on pagehide: this tab leaves
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
// the stream resumes where this browser stood. Only the leader runs `open`,
// so the page's own recovery (backoff, watchdog, fallback) runs there only.
(function () {
  'use strict';

  const PREFIX = 'comet-tabs:';
  // What the connection factory emits, and the leader relays. Status and
  // transport are state, and so is this tab's own role: the latest of each
  // is kept for a handler the page sets later.
  const EMITS = ['event', 'notice', 'status', 'transport'];
  const STATE = ['status', 'transport', 'role'];
  // The longest a new leader waits for the old one's 'bye' before it opens
  // the connection. Nothing is shown twice without it (see showOnce); it only
  // spares the server replaying, and the tabs skipping, the old leader's
  // last relays that were still on their way.
  const BYE_MS = 250;

  // --- What this tab shows ----------------------------------------------

  // The handle the page sets its handlers on, and show(kind, value). Until
  // the page sets a handler, the latest status, transport and role are kept
  // and handed over when it does; events and notices are not kept.
  function display() {
    const handle = {};
    const handlers = {};
    const latest = {};
    let ended = false;
    for (const kind of [...EMITS, 'role']) {
      Object.defineProperty(handle, 'on' + kind, {
        enumerable: true,
        get: () => handlers[kind] || null,
        set: (handler) => {
          handlers[kind] = handler;
          if (handler && kind in latest) handler(latest[kind]);
        },
      });
    }
    function show(kind, value) {
      if (ended) return;
      if (STATE.includes(kind)) latest[kind] = value;
      if (handlers[kind]) handlers[kind](value);
    }
    // The page closed it: 'closed', then nothing more.
    function end() {
      show('status', 'closed');
      ended = true;
    }
    return { handle, show, end, latest };
  }

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
  function idOrder(id) {
    const colon = id.lastIndexOf(':');
    const number = id.slice(colon + 1);
    if (!/^[0-9]+$/.test(number)) return null;
    return { era: colon < 0 ? '' : id.slice(0, colon), n: Number(number) };
  }

  /** Is `id` at or before `than` in the same era? */
  function notAfter(id, than) {
    const a = idOrder(id);
    const b = idOrder(than);
    return a !== null && b !== null && a.era === b.era && a.n <= b.n;
  }

  /**
   * showOnce(show) -> offer(event, restarted): shows `event` unless this tab
   * has shown it (or a later one of its era) already.
   */
  function showOnce(show) {
    let newest = ''; // the id of the newest event shown
    return (event, restarted = false) => {
      const id = typeof event.lastEventId === 'string' ? event.lastEventId : '';
      if (!restarted && notAfter(id, newest)) return false;
      if (id !== '') newest = id;
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
  function electByLock(name, tabId, role) {
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
    navigator.locks.request(name, { ifAvailable: true }, (lock) => (lock ? hold() : 'taken'))
      .then((answer) => {
        if (answer !== 'taken' || leaving.signal.aborted) return null;
        role.follow();
        return navigator.locks.request(name, { signal: leaving.signal }, hold);
      })
      .catch(quietly);
    return () => {
      leaving.abort(); // the queued request: a frozen or cached tab must never be granted the lock
      if (release) release();
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

  function electByLease(name, tabId, role) {
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

  function shareConnection(key, open, { share = true } = {}) {
    const view = display();
    const elect = 'locks' in navigator ? electByLock : storageWorks() ? electByLease : null;
    if (!share || typeof BroadcastChannel !== 'function' || elect === null) {
      view.show('role', 'alone');
      const closeConnection = open('', emitter(view.show));
      view.handle.close = () => {
        closeConnection();
        view.end();
      };
      return view.handle;
    }

    const tabId = Math.random().toString(36).slice(2) + Date.now().toString(36);
    const channel = new BroadcastChannel(PREFIX + key);
    const name = elect === electByLock ? PREFIX + key : PREFIX + 'lease:' + key;
    let lastEventId = ''; // of the last event this tab showed: where a new leader resumes
    let role = null;
    let leaderId = null; // the tab whose relays this follower shows
    let takingOver = null; // the timer of a new leader waiting for the old one's 'bye'
    let stopLeading = null;
    let resign = null;

    const post = (kind, value, restarted = false) => channel.postMessage({ from: tabId, kind, value, restarted });
    const showEvent = showOnce((ev) => {
      if (typeof ev.lastEventId === 'string') lastEventId = ev.lastEventId;
      view.show('event', ev);
    });

    // tutorial: lead
    // Granted the lock or the lease. The old leader's last relays may still
    // be on their way (the election and the channel are separate roads).
    // Resuming before them costs only a replay that every tab skips (see
    // showOnce); they all come before its 'bye', so wait for that, but not
    // longer than BYE_MS (a tab that crashed says nothing).
    function lead() {
      if (leaderId === null || leaderId === tabId) startLeading();
      else takingOver = setTimeout(startLeading, BYE_MS);
    }

    function startLeading() {
      clearTimeout(takingOver);
      takingOver = null;
      role = 'leader';
      leaderId = tabId;
      view.show('role', 'leader');
      // This term's emits: silent once it ends, whatever the factory still says.
      let term = true;
      let previous = lastEventId; // the connection's own last id: going back is a restart
      const closeConnection = open(lastEventId, emitter((kind, value) => {
        if (!term) return;
        if (kind !== 'event') {
          view.show(kind, value);
          post(kind, value);
          return;
        }
        const id = typeof value.lastEventId === 'string' ? value.lastEventId : '';
        const restarted = notAfter(id, previous);
        if (id !== '') previous = id;
        showEvent(value, restarted);
        post(kind, value, restarted);
      }));
      stopLeading = () => {
        term = false;
        closeConnection();
        post('bye');
      };
    }
    // end tutorial: lead

    function follow() {
      if (stopLeading) stopLeading();
      stopLeading = null;
      role = 'follower';
      leaderId = null;
      view.show('role', 'follower');
      view.show('status', 'connecting'); // until the leader says how its connection is
      post('hello');
    }

    channel.onmessage = ({ data }) => {
      if (data.kind === 'hello') {
        // A new follower: tell it what it cannot have seen.
        if (role === 'leader') for (const kind of ['transport', 'status']) {
          if (kind in view.latest) post(kind, view.latest[kind]);
        }
      } else if (role !== 'follower') {
        // The leader shows its own connection only.
      } else if (data.kind === 'bye') {
        if (data.from !== leaderId) return;
        leaderId = null;
        if (takingOver) startLeading();
        else view.show('status', 'connecting');
      } else if (EMITS.includes(data.kind)) {
        leaderId = data.from;
        if (data.kind === 'event') showEvent(data.value, data.restarted);
        else view.show(data.kind, data.value);
      }
    };

    // Leave the election: the connection closes first, then another tab
    // takes over. The channel stays open and the tab goes on showing what
    // the leader relays, so a tab that was only frozen misses nothing.
    function pause() {
      clearTimeout(takingOver);
      takingOver = null;
      if (stopLeading) stopLeading();
      stopLeading = null;
      if (resign) resign();
      resign = null;
      role = 'follower';
    }
    function resume() {
      if (resign === null) resign = elect(name, tabId, { lead, follow });
    }
    // A frozen tab runs nothing: it must not hold, or be next for, the lock.
    document.addEventListener('freeze', pause);
    document.addEventListener('resume', resume);
    resume();

    view.handle.close = () => {
      document.removeEventListener('freeze', pause);
      document.removeEventListener('resume', resume);
      pause();
      channel.close();
      view.end();
    };
    return view.handle;
  }

  // The emit object of the JS seam, each method calling send(kind, value).
  function emitter(send) {
    const emit = {};
    for (const kind of EMITS) emit[kind] = (value) => send(kind, value);
    return emit;
  }

  window.shareConnection = shareConnection;
})();
