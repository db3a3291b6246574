// The chat page: every message once, in order, over either transport.
//   eventsource  an EventSource on /chat/events (events `message` and `reset`)
//   longpoll     the tutorial's loop: /chat/since/N once, then /chat/get/N,
//                N+1, ... with resync on 404/410 and backoff on errors
'use strict';

const transport = chooseTransport();
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 10000;

const messageList = document.getElementById('messages');
const notices = document.getElementById('notices');
const form = document.getElementById('post-form');
const messageInput = document.getElementById('message');
const sendButton = document.getElementById('send');
const errorText = document.getElementById('error');
const statusText = document.getElementById('status');

// The number of the next message this page expects, or null before the
// first answer. It is the /chat/get/ cursor and the event stream's id alike:
// message N goes out with `id: N+1`.
let cursor = null;
let closeTransport = null;

document.getElementById('transport').textContent = transport;

function setStatus(state) {
  statusText.textContent = state;
  statusText.dataset.state = state;
}

function showMessage(number, text) {
  const atBottom = messageList.scrollHeight - messageList.scrollTop - messageList.clientHeight < 8;
  const item = document.createElement('li');
  item.value = number; // the list numbers each message as the server does
  item.textContent = text;
  messageList.append(item);
  if (atBottom) messageList.scrollTop = messageList.scrollHeight;
}

// The server no longer has the messages our cursor points to: it restarted,
// or they aged out of its bounded history. It replays what it still has from
// `first`, so start the list again from there and say why, outside the list.
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

// --- Transport 1: an EventSource ---------------------------------------

function openEventStream() {
  // A reopened page (back/forward cache) resumes from its cursor; the server
  // reads `lastEventId` from the query when there is no Last-Event-ID header.
  const url = cursor === null ? '/chat/events' : `/chat/events?lastEventId=${cursor}`;
  const source = openEventSource(url, { transport: 'eventsource' });
  source.onopen = () => setStatus('connected');
  source.onerror = () => setStatus(source.readyState === source.CLOSED ? 'closed' : 'connecting');
  source.addEventListener('message', (event) => {
    setStatus('connected');
    cursor = Number(event.lastEventId);
    showMessage(cursor - 1, event.data);
  });
  source.addEventListener('reset', (event) => {
    cursor = Number(event.data);
    showReset(cursor);
  });
  return () => source.close();
}

// --- Transport 2: long polling -----------------------------------------

function openLongPoll() {
  const request = new AbortController();
  pollChat(request.signal);
  return () => request.abort();
}

// tutorial: poll-loop
async function pollChat(signal) {
  let delay = RETRY_FIRST_MS;
  let catchingUp = true; // ask /chat/since/ for all we missed, then go one by one
  while (!signal.aborted) {
    // A poll the server is holding counts as connected.
    setStatus('connected');
    const from = cursor ?? 0;
    try {
      const path = catchingUp ? `/chat/since/${from}` : `/chat/get/${from}`;
      const response = await fetch(path, { signal, cache: 'no-store' });
      if (response.status === 404 || response.status === 410) {
        // Our cursor is past the end (a restarted server) or before the
        // start (aged out): start again from the server's first message.
        const first = response.headers.get('X-First-Message');
        if (first === null) throw new Error(`HTTP ${response.status} without X-First-Message`);
        if (cursor !== null) showReset(Number(first));
        cursor = Number(first);
        catchingUp = true;
      } else if (response.status === 200 && catchingUp) {
        const { next, messages } = await response.json();
        messages.forEach((text, i) => showMessage(next - messages.length + i, text));
        cursor = next;
        catchingUp = false;
      } else if (response.status === 200) {
        showMessage(from, await readText(response));
        cursor = from + 1;
      } else if (response.status !== 204) {
        // (204: the server held the poll until its timeout; ask again.)
        throw new Error(`HTTP ${response.status}`);
      }
      delay = RETRY_FIRST_MS;
    } catch (error) {
      if (signal.aborted) return;
      setStatus('connecting');
      await sleep(delay, signal);
      delay = Math.min(delay * 2, RETRY_MAX_MS);
    }
  }
}
// end tutorial: poll-loop

// The body is the message exactly as posted: decode it as UTF-8 without
// dropping a leading U+FEFF, which response.text() would do.
async function readText(response) {
  return new TextDecoder('utf-8', { ignoreBOM: true }).decode(await response.arrayBuffer());
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done);
  });
}

// --- Opening and closing -----------------------------------------------

function connect() {
  if (closeTransport) return;
  setStatus('connecting');
  closeTransport = transport === 'eventsource' ? openEventStream() : openLongPoll();
}

function disconnect() {
  closeTransport?.();
  closeTransport = null;
  setStatus('closed');
}

openWhileShown(connect, disconnect);

// --- Posting -----------------------------------------------------------

const POST_ERRORS = {
  400: 'The server refused the message: it was empty or not valid text.',
  413: 'The message is too long for the server.',
};

// The form's submit covers both the Send button and Enter in the input.
form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const text = messageInput.value;
  if (text.trim() === '') return;
  sendButton.disabled = true;
  showError('');
  try {
    const response = await fetch('/chat/post', {
      method: 'POST',
      body: new URLSearchParams({ message: text }),
    });
    if (response.ok) {
      messageInput.value = '';
    } else {
      showError(POST_ERRORS[response.status] ?? `The server refused the message (HTTP ${response.status}).`);
    }
  } catch {
    showError('The server could not be reached; the message was not sent.');
  } finally {
    sendButton.disabled = false;
    messageInput.focus();
  }
});
