// The page helper both pages use. A page asks it for "the stream of this URL
// over this transport" and only draws what arrives; the helper
//   - chooses the transport (?transport=, else EventSource, else the
//     fallback this tab switched to earlier in the session);
//   - keeps the stream open whatever happens to it: a transport that ends
//     CLOSED is opened again after a randomized backoff, resuming by its id;
//   - watches a native stream's heartbeats: one that shows nothing in time
//     while the server answers a plain request (a buffering proxy), or that
//     falls silent (a half-open connection, a paused server), is closed and
//     reopened, and one found buffered twice switches the page to the
//     long-poll fallback;
//   - shares the connection with the site's other tabs (tabs.js,
//     shareConnection) and shows #transport, #status, #role and a notice.
// Plain script, loaded after eventsource-fallback.js and tabs.js.
'use strict';

const BACKOFF_BASE_MS = 1000; // the first wait after a failure is up to this
const BACKOFF_CAP_MS = 30000; // no wait grows past this
const RETRY_AFTER_CAP_MS = 5 * 60 * 1000; // a Retry-After longer than this is cut to it
const DEFAULT_KEEPALIVE = 15; // seconds, the server's --keepalive default

const FALLBACK_KEY = 'comet.fallback:'; // + stream, in sessionStorage

// --- Choosing the transport ------------------------------------------------

/**
 * The transport this page starts with and whether the URL pinned it.
 * `?transport=longpoll|eventsource` pins it (a pinned page reconnects but
 * never switches); a browser without EventSource has only `longpoll`.
 * Otherwise `eventsource`, unless this tab already found `stream` buffered
 * earlier in the session, which keeps it on the fallback until the tab is
 * closed: a later visit tries EventSource again.
 */
function chooseTransport(stream = '') {
  const asked = new URLSearchParams(window.location.search).get('transport');
  if (asked === 'longpoll' || typeof window.EventSource !== 'function') {
    return { transport: 'longpoll', pinned: true };
  }
  if (asked === 'eventsource') return { transport: 'eventsource', pinned: true };
  return { transport: fallbackChosen(stream) ? 'longpoll' : 'eventsource', pinned: false };
}

function fallbackChosen(stream) {
  try {
    return window.sessionStorage.getItem(FALLBACK_KEY + stream) === 'longpoll';
  } catch {
    return false; // storage disabled: every page load detects afresh
  }
}

function rememberFallback(stream) {
  try {
    window.sessionStorage.setItem(FALLBACK_KEY + stream, 'longpoll');
  } catch {
    // Storage disabled: this page stays on the fallback, a reload detects again.
  }
}

// --- The reconnection schedule ----------------------------------------------

// tutorial: backoff
/**
 * How long to wait before the next attempt: "full jitter". After the n-th
 * failure in a row the wait is drawn uniformly from [0, min(cap, base·2^n)),
 * so clients dropped together (a restart) come back spread out, and one that
 * keeps failing asks less and less often. A Retry-After is waited out first,
 * and the jitter comes on top, so clients told the same time still spread.
 * `reset()` once a connection has delivered.
 */
class Backoff {
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
function retryAfterMs(value, now) {
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
function watchdogTimes(keepalive) {
  const period = keepalive * 1000;
  return { bufferedMs: Math.min(5000, Math.max(2000, period)), silentMs: 2.5 * period };
}
// end tutorial: watchdog

/**
 * Does the server answer a plain request within `ms`? HEAD of this page,
 * through whatever proxy the stream goes through; any status will do.
 */
async function serverAnswers(ms) {
  try {
    await fetch(window.location.pathname, { method: 'HEAD', cache: 'no-store', signal: AbortSignal.timeout(ms) });
    return true;
  } catch {
    return false;
  }
}

/** The server's --keepalive, which the page template puts on <body data-keepalive>. */
function keepaliveSeconds() {
  const value = Number(document.body.dataset.keepalive);
  return value > 0 ? value : DEFAULT_KEEPALIVE;
}

const realClock = {
  setTimeout: (callback, ms) => window.setTimeout(callback, ms),
  clearTimeout: (timer) => window.clearTimeout(timer),
  now: () => Date.now(),
};

// --- One attempt at a stream -------------------------------------------------

/**
 * An attempt at the event stream `url` over `transport`, for keepOpen():
 * `attempt(lastEventId, report)` opens one EventSource (or
 * LongPollEventSource) resuming at `lastEventId` and returns its close().
 * The id goes in the `lastEventId` query parameter, which the server reads
 * when there is no Last-Event-ID header: a new source has none to send. A
 * native stream asks for heartbeats; the fallback gets none (each answered
 * poll shows it is alive).
 */
function streamAttempt(url, { transport, types = ['message'] }) {
  const native = transport === 'eventsource';
  return (lastEventId, report) => {
    const target = new URL(url, document.baseURI);
    if (native) target.searchParams.set('heartbeat', '1');
    if (lastEventId !== '') target.searchParams.set('lastEventId', lastEventId);
    const source = openEventSource(target.pathname + target.search, { transport });
    // A native stream is live once its first heartbeat is through; a poll
    // that was answered at all is live.
    source.onopen = native ? () => report.opened() : () => report.delivered(null);
    if (native) source.addEventListener('heartbeat', () => report.delivered(null));
    for (const type of types) {
      source.addEventListener(type, (event) => report.delivered(
        { type: event.type, data: event.data, lastEventId: event.lastEventId },
      ));
    }
    source.onerror = (event) => {
      // CONNECTING: it retries by itself (a network error). CLOSED: it gave
      // up (a non-200 answer, a wrong type), and the page decides.
      if (source.readyState === source.CLOSED) report.failed(event.retryAfter ?? null);
      else report.retrying();
    };
    return () => source.close();
  };
}

// --- Keeping it open ---------------------------------------------------------

/**
 * The connection factory tabs.js runs in the tab that holds the connection:
 * `open(lastEventId, emit)` keeps the stream open until its close() is
 * called (emit and close as in shareConnection). `attempts` maps each
 * transport to an attempt (streamAttempt(), or the chat's own loop), which
 * tells the factory how it goes through a `report`:
 *   opened()            a native stream's response has started;
 *   delivered(event)    it is live: an event arrived, or, with null, a
 *                       heartbeat or an answered poll;
 *   retrying()          it lost the connection and retries by itself;
 *   failed(retryAfter)  it ended CLOSED (with the Retry-After header's
 *                       value where it could read one, else null).
 * Every new attempt waits its turn in the Backoff, which a delivery resets.
 * A native EventSource is watched (see watchdogTimes): silent, or not live
 * in time, closes it and tries again; not live in time while the server
 * answers a probe is buffered, and buffered twice in a row switches to
 * `longpoll` unless `pinned`. `clock`, `random` and `probe` are for tests.
 */
function keepOpen({
  attempts, transport, pinned, stream, keepalive,
  clock = realClock, random = Math.random, probe = serverAnswers,
}) {
  const { bufferedMs, silentMs } = watchdogTimes(keepalive);

  return function open(lastEventId, emit) {
    const backoff = new Backoff({ random });
    let current = transport;
    let last = lastEventId; // the id to resume by
    let report = null; // the attempt in flight's report; older ones are ignored
    let closeAttempt = () => {};
    let watchdog = null; // fires when the attempt in flight has been quiet too long
    let reopen = null; // the pending next attempt
    let probing = null; // the probe in flight's token
    let live = false; // the attempt in flight has delivered
    let buffered = 0; // attempts in a row found buffered

    if (!pinned && fallbackChosen(stream)) {
      current = 'longpoll';
      emit.notice('Using long polling: earlier in this session the event stream was held back on its way here.');
    }
    emit.transport(current);
    attempt();
    return close;

    function attempt() {
      reopen = null;
      live = false;
      emit.status('connecting');
      const watched = current === 'eventsource';
      const mine = report = {
        opened() {
          if (report === mine) watch(bufferedMs, notLiveInTime);
        },
        delivered(event) {
          if (report !== mine) return;
          if (watched) watch(silentMs, foundSilent);
          if (!live) {
            live = true;
            buffered = 0;
            backoff.reset();
            emit.status('connected');
          }
          if (event) {
            last = event.lastEventId;
            emit.event(event);
          }
        },
        retrying() {
          if (report !== mine) return;
          if (watched) watch(silentMs, foundSilent);
          live = false;
          emit.status('connecting');
        },
        failed(retryAfter) {
          if (report === mine) retryLater(backoff.next(retryAfterMs(retryAfter, clock.now())));
        },
      };
      const closeThis = attempts[current](last, mine);
      if (report !== mine) {
        closeThis(); // it failed before it even returned
        return;
      }
      closeAttempt = closeThis;
      if (watched && watchdog === null) watch(bufferedMs, notLiveInTime);
    }

    function watch(ms, found) {
      clock.clearTimeout(watchdog);
      watchdog = clock.setTimeout(found, ms);
    }

    function stopAttempt() {
      report = null;
      probing = null;
      clock.clearTimeout(watchdog);
      watchdog = null;
      closeAttempt();
      closeAttempt = () => {};
    }

    function retryLater(ms) {
      stopAttempt();
      live = false;
      emit.status('connecting');
      reopen = clock.setTimeout(attempt, ms);
    }

    function foundSilent() {
      retryLater(backoff.next());
    }

    // tutorial: found-buffered
    // A buffering proxy and a server that does not answer look the same
    // from here; a plain request tells them apart.
    async function notLiveInTime() {
      stopAttempt();
      const mine = probing = {};
      const answered = await probe(bufferedMs);
      if (probing !== mine) return; // closed meanwhile
      probing = null;
      if (answered) foundBuffered();
      else retryLater(backoff.next());
    }

    function foundBuffered() {
      buffered += 1;
      if (buffered < 2 || pinned) {
        retryLater(backoff.next());
        return;
      }
      current = 'longpoll';
      rememberFallback(stream);
      emit.transport(current);
      emit.notice('Switched to long polling: the event stream was held back on its way here ' +
        '(a buffering proxy or a virus scanner), twice in a row.');
      attempt();
    }
    // end tutorial: found-buffered

    function close() {
      stopAttempt();
      clock.clearTimeout(reopen);
      reopen = null;
    }
  };
}

// --- The page ----------------------------------------------------------------

/** #status: `connecting`, `connected` or `closed` (also its data-state, for the style). */
function setStatus(state) {
  const status = document.getElementById('status');
  status.textContent = state;
  status.dataset.state = state;
}

function setText(id, value) {
  document.getElementById(id).textContent = value;
}

// Open now; close when the page is hidden for good or put in the
// back/forward cache, so the server forgets this tab at once; open again if
// the cache restores it.
function openWhileShown(connect, disconnect) {
  window.addEventListener('pagehide', disconnect);
  window.addEventListener('pageshow', (event) => {
    if (event.persisted) connect();
  });
  connect();
}

/**
 * Everything a page needs to show `stream` (a name: '/ticker', '/chat'):
 * `attempts` as for keepOpen(), `onevent(event)` for each event in order,
 * `onrole(role)` when the tab's role is known. The tabs that show the same
 * stream over the same transport mode share one connection (tabs.js);
 * `?share=off` keeps this page's own.
 */
function showStream({ stream, attempts, onevent, onrole = () => {} }) {
  const { transport, pinned } = chooseTransport(stream);
  const share = new URLSearchParams(window.location.search).get('share') !== 'off';
  const key = `${stream}|${pinned ? transport : 'auto'}`;
  const open = keepOpen({ attempts, transport, pinned, stream, keepalive: keepaliveSeconds() });
  let handle = null;

  setText('transport', transport);
  openWhileShown(() => {
    if (handle) return;
    setStatus('connecting');
    handle = window.shareConnection(key, open, { share });
    handle.onevent = onevent;
    handle.onstatus = setStatus;
    handle.ontransport = (shown) => {
      setText('transport', shown);
      // A follower remembers the switch too, so it starts on the fallback
      // if it has to take over the connection.
      if (shown === 'longpoll' && !pinned) rememberFallback(stream);
    };
    handle.onnotice = (text) => setText('connection-notice', text);
    handle.onrole = (role) => {
      setText('role', role);
      onrole(role);
    };
  }, () => {
    handle?.close();
    handle = null;
    setStatus('closed');
  });
}
