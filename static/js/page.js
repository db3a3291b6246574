// The page helper both pages use. A page asks it for "the stream of this URL
// over this transport" and only draws what arrives; the helper
//   - chooses the transport (?transport=, else EventSource, else the
//     fallback this tab switched to earlier in the session);
//   - keeps the stream open whatever happens to it (KeepOpen, recovery.js);
//   - shares the connection with the site's other tabs (tabs.js);
//   - shows #transport, #status, #role, a notice, and "On the wire".
// All of them speak one interface, a Connection (connection.js).
import { listen } from './connection.js';
import { KeepOpen } from './recovery.js';
import { shareConnection } from './tabs.js';
import { showWire } from './wire.js';

const DEFAULT_KEEPALIVE = 15; // seconds, the server's --keepalive default
const DEFAULT_POLL_TIMEOUT = 25; // seconds, the server's --poll-timeout default
const POLL_MARGIN_MS = 5000; // for the network, on top of the server's longest hold
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
function chooseTransport(memory) {
  const asked = new URLSearchParams(window.location.search).get('transport');
  if (asked === 'longpoll' || typeof window.EventSource !== 'function') {
    return { transport: 'longpoll', pinned: true };
  }
  if (asked === 'eventsource') return { transport: 'eventsource', pinned: true };
  return { transport: memory.chosen() ? 'longpoll' : 'eventsource', pinned: false };
}

/** The fallback switch of `stream`, kept in sessionStorage for this tab's session. */
function sessionMemory(stream) {
  return {
    chosen() {
      try {
        return window.sessionStorage.getItem(FALLBACK_KEY + stream) === 'longpoll';
      } catch {
        return false; // storage disabled: every page load detects afresh
      }
    },
    remember() {
      try {
        window.sessionStorage.setItem(FALLBACK_KEY + stream, 'longpoll');
      } catch {
        // Storage disabled: this page stays on the fallback, a reload detects again.
      }
    },
  };
}

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

/**
 * How long a long poll may go unanswered before the page gives it up: the
 * server's --poll-timeout (the longest it holds one, which the template
 * puts on <body data-poll-timeout>) plus a margin for the network.
 */
export function abandonPollAfterMs() {
  const value = Number(document.body.dataset.pollTimeout);
  return (value > 0 ? value : DEFAULT_POLL_TIMEOUT) * 1000 + POLL_MARGIN_MS;
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
 * The connection a page shows for `stream`: KeepOpen on `transport` (more
 * of its options in `keepOpen`), shared with this browser's other tabs of
 * the same stream and transport mode unless `share` is false (`tabs`:
 * shareConnection's options, for tests). Every tab remembers a switch to
 * the fallback, a follower too, so it starts there if it has to take over
 * the connection.
 */
export function keepStream({ stream, attempts, transport, pinned, memory, share = true, keepOpen = {}, tabs = {} }) {
  const kept = new KeepOpen({ attempts, transport, pinned, memory, ...keepOpen });
  const connection = share ? shareConnection(`${stream}|${pinned ? transport : 'auto'}`, kept, tabs) : kept;
  listen(connection, {
    transport: (shown) => {
      if (shown === 'longpoll' && !pinned) memory.remember();
    },
  });
  return connection;
}

/**
 * Everything a page needs to show `stream` (a name: '/ticker', '/chat'):
 * `attempts` as for KeepOpen, `onevent(event)` for each event in order,
 * `onrole(role)` when the tab's role is known. The tabs that show the same
 * stream over the same transport mode share one connection (tabs.js);
 * `?share=off` keeps this page's own. Returns the Connection, for a page
 * that wants to hear more of it.
 */
export function showStream({ stream, attempts, onevent, onrole = () => {} }) {
  const memory = sessionMemory(stream);
  const { transport, pinned } = chooseTransport(memory);
  const share = new URLSearchParams(window.location.search).get('share') !== 'off';
  const connection = keepStream({
    stream, attempts, transport, pinned, memory, share,
    keepOpen: { keepalive: keepaliveSeconds(), probe: serverAnswers },
  });
  let lastEventId = ''; // of the last event shown: where a page back from the cache resumes

  setText('transport', transport);
  listen(connection, {
    event: (event) => {
      lastEventId = event.lastEventId;
      onevent(event);
    },
    status: setStatus,
    transport: (shown) => setText('transport', shown),
    notice: (text) => setText('connection-notice', text),
    role: (role) => {
      setText('role', role);
      onrole(role);
    },
  });
  showWire(document.getElementById('wire'), connection);
  openWhileShown(() => {
    setStatus('connecting');
    connection.open(lastEventId);
  }, () => {
    connection.close();
    setStatus('closed');
  });
  return connection;
}
