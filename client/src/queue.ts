// The bounded queue: one FIFO per class, bounded together in events and bytes (counting the events held in
// batches being sent). When an event does not fit, the oldest waiting events of the lowest class present are
// dropped first — never an event of a higher class than the one arriving, which is dropped itself instead.
import { PRIORITIES, type Priority, type TrackEvent } from './options.js';

/** One tracked event, serialised once. */
export interface QueuedEvent {
  /** Client-wide order of `track` calls. */
  readonly seq: number;
  readonly key: string;
  readonly priority: Priority;
  readonly event: TrackEvent;
  /** The event's wire JSON and its size in bytes. */
  readonly json: string;
  readonly bytes: number;
  readonly trackedAt: number;
}

/** A FIFO with O(1) push and shift (an array and a head index, compacted now and then). */
class Fifo<T> {
  private items: T[] = [];
  private head = 0;
  get length(): number {
    return this.items.length - this.head;
  }
  push(item: T): void {
    this.items.push(item);
  }
  peek(): T | undefined {
    return this.items[this.head];
  }
  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head]!;
    (this.items as Array<T | undefined>)[this.head++] = undefined;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }
}

/** Waiting events per class plus the budget they share with the events in flight. */
export interface EventQueue {
  /** Adds an event, dropping what must go to make room; returns the dropped events (possibly `event` itself). */
  push(event: QueuedEvent): QueuedEvent[];
  /** Takes up to `maxEvents` / `maxBytes` of JSON from the head of a class (always at least one event when any waits). */
  take(priority: Priority, maxEvents: number, maxBytes: number): QueuedEvent[];
  /** Frees the budget of events that left the client (delivered, rejected or given up). */
  release(events: readonly QueuedEvent[]): void;
  /** The oldest waiting event of a class. */
  peek(priority: Priority): QueuedEvent | undefined;
  /** Removes every waiting event of a class. */
  drain(priority: Priority): QueuedEvent[];
  waiting(priority: Priority): { events: number; bytes: number };
  /** Events and bytes held: waiting plus in flight. */
  readonly held: { readonly events: number; readonly bytes: number };
}

/** A queue holding at most `maxEvents` events and `maxBytes` bytes of event JSON. */
export function createEventQueue(limits: { maxEvents: number; maxBytes: number }): EventQueue {
  const fifos = new Map<Priority, Fifo<QueuedEvent>>(PRIORITIES.map((p) => [p, new Fifo<QueuedEvent>()]));
  const waitingBytes = new Map<Priority, number>(PRIORITIES.map((p) => [p, 0]));
  const held = { events: 0, bytes: 0 };
  const fifo = (p: Priority) => fifos.get(p)!;
  const fits = (e: QueuedEvent) => held.events + 1 <= limits.maxEvents && held.bytes + e.bytes <= limits.maxBytes;
  const shiftFrom = (p: Priority): QueuedEvent => {
    const e = fifo(p).shift()!;
    waitingBytes.set(p, waitingBytes.get(p)! - e.bytes);
    held.events--;
    held.bytes -= e.bytes;
    return e;
  };
  // Lowest class first; a class above the arriving event's is never dropped for it.
  const lowestFirst = [...PRIORITIES].reverse();

  return {
    push(event) {
      const dropped: QueuedEvent[] = [];
      if (event.bytes > limits.maxBytes) return [event];
      for (const p of lowestFirst) {
        if (fits(event)) break;
        if (PRIORITIES.indexOf(p) < PRIORITIES.indexOf(event.priority)) break;
        while (!fits(event) && fifo(p).length > 0) dropped.push(shiftFrom(p));
      }
      if (!fits(event)) {
        dropped.push(event);
        return dropped;
      }
      fifo(event.priority).push(event);
      waitingBytes.set(event.priority, waitingBytes.get(event.priority)! + event.bytes);
      held.events++;
      held.bytes += event.bytes;
      return dropped;
    },
    take(priority, maxEvents, maxBytes) {
      const q = fifo(priority);
      const out: QueuedEvent[] = [];
      let bytes = 0;
      while (q.length > 0 && out.length < maxEvents) {
        const next = q.peek()!;
        if (out.length > 0 && bytes + next.bytes > maxBytes) break;
        q.shift();
        bytes += next.bytes;
        out.push(next);
      }
      // Taken events stay in `held` until released: the budget bounds what is in flight too.
      waitingBytes.set(priority, waitingBytes.get(priority)! - bytes);
      return out;
    },
    release(events) {
      for (const e of events) {
        held.events--;
        held.bytes -= e.bytes;
      }
    },
    peek: (priority) => fifo(priority).peek(),
    drain(priority) {
      const out: QueuedEvent[] = [];
      while (fifo(priority).length > 0) out.push(shiftFrom(priority));
      return out;
    },
    waiting: (priority) => ({ events: fifo(priority).length, bytes: waitingBytes.get(priority)! }),
    held,
  };
}
