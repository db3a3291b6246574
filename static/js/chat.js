// The chat page: every message once, in order, over either transport.
//   eventsource  an EventSource on /chat/events (events `message` and `reset`)
//   longpoll     the tutorial's loop: /chat/since/N once, then /chat/get/N,
//                N+1, ... with resync on 404/410
// Both carry ids `E:N+1`: E the history's epoch, N the message's number.
// showStream() (page.js) reopens either after a failure, resuming by the
// last id, and shares it with the site's other chat tabs; this module draws.
import { ChatOrder, chatMessage, parseChatId } from './chat-order.js';
import { Connection, listen } from './connection.js';
import { abandonPollAfterMs, showStream } from './page.js';
import { streamAttempt } from './transport.js';
import { duration } from './wire.js';

const POST_TIMEOUT_MS = 10000; // a post unanswered this long is given up

const messageList = document.getElementById('messages');
const notices = document.getElementById('notices');
const form = document.getElementById('post-form');
const messageInput = document.getElementById('message');
const sendButton = document.getElementById('send');
const errorText = document.getElementById('error');

const order = new ChatOrder();
let pending = null; // events held back while a follower catches up

function receive(event) {
  for (const [what, number, text] of order.take(event)) {
    if (what === 'reset') showReset(number);
    else showMessage(number, text);
  }
}

function onevent(event) {
  if (pending) pending.push(event);
  else receive(event);
}

function showMessage(number, text) {
  const atBottom = messageList.scrollHeight - messageList.scrollTop - messageList.clientHeight < 8;
  const item = document.createElement('p');
  item.dataset.number = number; // shown before it, as the server numbers it
  item.textContent = text;
  messageList.append(item);
  if (atBottom) messageList.scrollTop = messageList.scrollHeight;
}

// Start the list again from `first` and say why, outside the list.
function showReset(first) {
  messageList.replaceChildren();
  const notice = document.createElement('p');
  notice.className = 'notice';
  notice.textContent = `The server's history restarted at message ${first} ` +
    '(it restarted, or older messages were dropped). The list below starts again from there.';
  notices.append(notice);
}

function showError(text) {
  errorText.textContent = text;
}

// A tab that joins as a follower (a new tab, or one back from the
// back/forward cache) has missed what the leader showed before: it catches
// up by itself with the loop's first step, /chat/since/ from where its list
// stands, while the relayed events wait.
function catchUp() {
  pending = [];
  const poll = new ChatLongPoll(abandonPollAfterMs());
  // 'connected': the catch-up answered; its messages follow, then it stops.
  // If it fails, the relayed events still come; older messages are missing.
  const unlisten = listen(poll, { event: receive, status: (state) => state === 'connected' && poll.close() });
  poll.open(order.lastEventId).finally(() => {
    unlisten();
    const held = pending;
    pending = null;
    held.forEach(receive);
  });
}

// --- Long polling: the tutorial's loop ----------------------------------

/** The loop below as a Connection, for KeepOpen: one attempt per open(). */
class ChatLongPoll extends Connection {
  #request = null;
  retryAfter = null;

  constructor(abandonAfterMs) {
    super();
    this.abandonAfterMs = abandonAfterMs;
  }

  open(lastEventId = '') {
    this.#request = new AbortController();
    return pollChat(lastEventId, this, this.#request.signal);
  }

  close() {
    this.#request?.abort();
  }

  // fetchHeld(), saying on the wire what the loop asked, and when and how
  // the server answered: a /chat/get/N it held shows for how long.
  async fetchHeld(url, signal) {
    const path = new URL(url, document.baseURI).pathname;
    const held = path.startsWith('/chat/get/') ? 'held' : 'after';
    this.say('wire', `→ GET ${path}`);
    const sent = Date.now();
    try {
      const answer = await fetchHeld(url, signal, this.abandonAfterMs);
      const first = answer.response.headers.get('X-First-Message');
      this.say('wire', `← ${answer.response.status} ${path} · ${held} ${duration(Date.now() - sent)}` +
        (first === null ? '' : ` · X-First-Message: ${first}`));
      return answer;
    } catch (error) {
      if (!signal.aborted) {
        const why = error.name === 'AbortError' ? 'given up, unanswered' : 'network error';
        this.say('wire', `✕ ${path}: ${why} after ${duration(Date.now() - sent)}`);
      }
      throw error;
    }
  }
}

// tutorial: poll-loop
async function pollChat(lastEventId, connection, signal) {
  // Resume where the id points: message `cursor` of the history `held`.
  let [held, cursor] = lastEventId === '' ? [null, null] : parseChatId(lastEventId);
  let catchingUp = true; // ask /chat/since/ for all we missed, then go one by one
  try {
    while (!signal.aborted) {
      const path = catchingUp ? `/chat/since/${cursor ?? 0}` : `/chat/get/${cursor}`;
      // With the epoch we hold, a cursor into another history is a 410.
      const query = held ? `?epoch=${encodeURIComponent(held)}` : '';
      const { response, body } = await connection.fetchHeld(path + query, signal);
      if (response.status === 404 || response.status === 410) {
        // Our cursor is past the end, before the start (aged out), or in
        // another epoch (a restarted server): start again from the first
        // message the server has, and say so.
        const first = response.headers.get('X-First-Message');
        if (first === null) throw new Error(`HTTP ${response.status} without X-First-Message`);
        held = response.headers.get('X-Chat-Epoch') ?? '';
        if (cursor !== null) connection.say('event', { type: 'reset', data: first, lastEventId: `${held}:${first}` });
        cursor = Number(first);
        catchingUp = true;
      } else if (response.status === 200 && catchingUp) {
        const since = JSON.parse(readText(body));
        held = since.epoch ?? '';
        connection.say('status', 'connected'); // a poll the server holds counts as connected
        since.messages.forEach((text, i) => connection.say('event', chatMessage(held, since.next - since.messages.length + i, text)));
        cursor = since.next;
        catchingUp = false;
      } else if (response.status === 200) {
        connection.say('event', chatMessage(held, cursor, readText(body)));
        cursor += 1;
      } else if (response.status !== 204) {
        // (204: the server held the poll until its timeout; ask again.)
        // Anything else (a proxy's 502 while the app restarts, a 503 at
        // the cap): KeepOpen (recovery.js) opens the loop again after a backoff.
        connection.retryAfter = response.headers.get('Retry-After');
        connection.say('status', 'closed');
        return;
      }
    }
  } catch {
    if (!signal.aborted) {
      connection.retryAfter = null;
      connection.say('status', 'closed'); // a network error
    }
  }
}
// end tutorial: poll-loop

// tutorial: fetch-held
// A held poll is answered within the server's --poll-timeout. One still
// unanswered past that and a margin went down a connection that fell
// silent without closing (sleep, a network change): give it up, and the
// loop fails as after a network error, to be asked again by its id.
async function fetchHeld(url, signal, abandonAfterMs) {
  const request = new AbortController();
  const abandon = setTimeout(() => request.abort(), abandonAfterMs);
  const leave = () => request.abort();
  signal.addEventListener('abort', leave);
  try {
    const response = await fetch(url, { signal: request.signal, cache: 'no-store' });
    return { response, body: await response.arrayBuffer() };
  } finally {
    clearTimeout(abandon);
    signal.removeEventListener('abort', leave);
  }
}
// end tutorial: fetch-held

// The body is the message exactly as posted: decode it as UTF-8 without
// dropping a leading U+FEFF, which response.text() would do.
function readText(body) {
  return new TextDecoder('utf-8', { ignoreBOM: true }).decode(body);
}

// --- Opening and closing -----------------------------------------------

showStream({
  stream: '/chat',
  attempts: {
    eventsource: streamAttempt('/chat/events', { transport: 'eventsource', types: ['message', 'reset'] }),
    longpoll: () => new ChatLongPoll(abandonPollAfterMs()),
  },
  onevent,
  onrole: (role) => {
    if (role === 'follower' && pending === null) catchUp();
  },
});

// --- Posting -----------------------------------------------------------

const POST_ERRORS = {
  400: 'The server refused the message: it was empty or not valid text.',
  413: 'The message is too long for the server.',
};

// Posting faster than the server allows (429): when to try again, from
// Retry-After (whole seconds); the text stays in the box meanwhile.
function tooFast(retryAfter) {
  const seconds = Number(retryAfter);
  const when = Number.isInteger(seconds) && seconds > 0 ? `in ${seconds} s` : 'in a moment';
  return `Too many messages in a row: try again ${when}. The message is still in the box.`;
}

// How long a post may take; a test may shorten it with <form data-timeout>.
function postTimeout() {
  return Number(form.dataset.timeout) || POST_TIMEOUT_MS;
}

// The form's submit covers both the Send button and Enter in the input.
// The text stays in the box until the server has taken it.
form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const text = messageInput.value;
  if (text.trim() === '') return;
  sendButton.disabled = true;
  showError('');
  const timeout = postTimeout();
  try {
    const response = await fetch('/chat/post', {
      method: 'POST',
      body: new URLSearchParams({ message: text }),
      signal: AbortSignal.timeout(timeout),
    });
    if (response.ok) {
      if (messageInput.value === text) messageInput.value = '';
    } else if (response.status === 429) {
      showError(tooFast(response.headers.get('Retry-After')));
    } else {
      showError(POST_ERRORS[response.status] ?? `The server refused the message (HTTP ${response.status}).`);
    }
  } catch (error) {
    showError(error.name === 'TimeoutError'
      ? `The server did not answer within ${timeout / 1000} s, so the post was given up; ` +
        'it may or may not have arrived. The message is still in the box.'
      : 'The server could not be reached; the message was not sent.');
  } finally {
    sendButton.disabled = false;
    messageInput.focus();
  }
});
