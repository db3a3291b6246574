// The chat's list in order, every message once: what to draw for each event
// that arrives, over either transport. Pure, so tests/js runs it in Node.
// Ids are `E:N+1`: E the history's epoch, N the message's number.

/** An id `E:k` as [E, k]; a bare `k` (a server without epochs) has E ''. */
export function parseChatId(id) {
  const colon = id.lastIndexOf(':');
  return [colon < 0 ? '' : id.slice(0, colon), Number(id.slice(colon + 1))];
}

/** Message `number` of the history `epoch`, as the event stream carries it. */
export function chatMessage(epoch, number, text) {
  return { type: 'message', data: text, lastEventId: `${epoch}:${number + 1}` };
}

/**
 * What the list shows: messages up to `next - 1` of the history `epoch`
 * (null before the first). `take(event)` returns what to draw for an
 * event: `[]` for one the list has already (a replay after a hand-over
 * between tabs, or a catch-up overlapping the stream), else
 * `['reset', first]` (start the list again from message `first`: the
 * server restarted, another epoch, or the messages aged out) and/or
 * `['message', number, text]`.
 */
export class ChatOrder {
  epoch = null;
  next = null;

  take({ type, data, lastEventId }) {
    const [epoch, id] = parseChatId(lastEventId);
    if (type === 'reset') {
      this.epoch = epoch;
      this.next = Number(data);
      return [['reset', this.next]];
    }
    const number = id - 1;
    if (epoch === this.epoch && number < this.next) return [];
    const draw = this.epoch !== null && epoch !== this.epoch ? [['reset', number]] : [];
    this.epoch = epoch;
    this.next = number + 1;
    return [...draw, ['message', number, data]];
  }

  /** The id to resume after what the list shows ('' before the first). */
  get lastEventId() {
    return this.epoch === null ? '' : `${this.epoch}:${this.next}`;
  }
}
